"""What the checks call concurrently."""

from __future__ import annotations

import os
from pathlib import Path

from catalog.models import Author, Book
from django.db import IntegrityError, connection


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


def count_authors() -> int:
    return Author.objects.count()


def count_books() -> int:
    return Book.objects.count()


def create_author(*, name: str) -> str:
    try:
        Author.objects.create(name=name)
    except IntegrityError:
        return "duplicate"
    return "created"


def report(check: str, name: str) -> None:
    """Record the database a check saw, for the test that runs the checks."""
    path = os.environ.get("CONCURRENCY_REPORT")
    if path:
        with Path(path).open("a") as f:
            f.write(f"{check} {name}\n")
