"""Template loaders: called once per template build with the alias."""

from __future__ import annotations

from catalog.models import Author, Book, Tag

BOOKS_PER_AUTHOR = 20


def load_books(*, using: str) -> None:
    fiction = Tag.objects.using(using).get(name="fiction")
    books = [
        Book(title=f"{author.name} {i}", author=author)
        for author in Author.objects.using(using).order_by("pk")
        for i in range(BOOKS_PER_AUTHOR)
    ]
    Book.objects.using(using).bulk_create(books)
    for book in Book.objects.using(using).all():
        book.tags.add(fiction)


def load_other(*, using: str) -> None:
    author = Author.objects.using(using).create(name="Other Author")
    Book.objects.using(using).create(title="Other Book", author=author)
