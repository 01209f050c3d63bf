"""The same promises as tests.py, written for pytest-django: its
``transactional_db``, ``serialized_rollback``, ``available_apps`` and
``live_server``. Run in file order, in one process (or ``--dist loadfile``).
"""

from __future__ import annotations

from typing import Any
from urllib.request import urlopen

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType

from shelf.models import Book, Genre, Shelf

MIGRATED_GENRES = ["fiction", "poetry"]


def genres() -> list[str]:
    return list(Genre.objects.order_by("name").values_list("name", flat=True))


def assert_flushed() -> None:
    assert Book.objects.count() == 0
    assert Genre.objects.count() == 0
    assert User.objects.count() == 0
    assert list(Shelf.objects.values_list("label", flat=True)) == ["default"]
    assert ContentType.objects.filter(app_label="shelf", model="book").exists()
    assert Permission.objects.filter(codename="add_book").exists()


@pytest.mark.django_db
def test_rolls_back_on_the_migrated_rows() -> None:
    assert genres() == MIGRATED_GENRES
    Book.objects.create(title="rolled back")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_serialized_changes_migrated_rows() -> None:
    assert genres() == MIGRATED_GENRES
    Genre.objects.filter(name="poetry").delete()
    Book.objects.create(title="serialized")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_serialized_finds_them_back() -> None:
    assert genres() == MIGRATED_GENRES
    assert Book.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_transactional_writes() -> None:
    Book.objects.create(title="committed").genres.add(Genre.objects.create(name="x"))
    User.objects.create(username="bob")
    Permission.objects.filter(codename="change_book").delete()


def test_transactional_db_finds_the_flushed_state(transactional_db: None) -> None:
    assert_flushed()
    assert Permission.objects.filter(codename="change_book").exists()


@pytest.mark.django_db(transaction=True, available_apps=["shelf"])
def test_available_apps_writes() -> None:
    Book.objects.create(title="available")


@pytest.mark.django_db(transaction=True, available_apps=["shelf"])
def test_available_apps_finds_its_tables_flushed() -> None:
    assert Book.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_live_server_writes(live_server: Any) -> None:
    with urlopen(f"{live_server.url}/shelve/?title=served") as response:
        assert response.read() == b"1"
    assert Book.objects.get().title == "served"


@pytest.mark.django_db(transaction=True)
def test_live_server_write_is_gone() -> None:
    assert_flushed()
