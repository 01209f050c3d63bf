from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path


def shelve(request: HttpRequest) -> HttpResponse:
    """Writes a book from the server's thread, and counts them."""
    from shelf.models import Book

    Book.objects.create(title=request.GET.get("title", "served"))
    return HttpResponse(str(Book.objects.count()))


urlpatterns = [path("shelve/", shelve)]
