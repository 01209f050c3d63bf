from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path


def count(request: HttpRequest) -> HttpResponse:
    from catalog.models import Book

    return HttpResponse(str(Book.objects.count()))


urlpatterns = [path("count/", count)]
