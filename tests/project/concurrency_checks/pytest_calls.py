"""Concurrent calls under ``pytest -n 2`` (pytest-django's xdist suffixes)."""

from __future__ import annotations

import os

import pytest
from catalog.models import Author
from django.db import connection

from concurrency_checks.calls import count_authors, create_author, database_name, report
from testbed import call_concurrently
from testbed.concurrency import UnsharedDatabaseError


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(4))
def test_calls_use_this_workers_database(run: int) -> None:
    name = connection.settings_dict["NAME"]
    report(os.environ["PYTEST_XDIST_WORKER"], name)
    Author.objects.create(name=f"Parent {run}")
    assert call_concurrently(2, database_name) == [name, name]
    assert call_concurrently(2, count_authors) == [1, 1]
    results = call_concurrently(3, create_author, name="Same")
    assert sorted(results) == ["created", "duplicate", "duplicate"]


@pytest.mark.django_db
def test_refused_inside_a_transaction() -> None:
    with pytest.raises(
        UnsharedDatabaseError, match="this test runs inside a transaction"
    ):
        call_concurrently(2, count_authors)


def test_refused_without_database_access() -> None:
    with pytest.raises(RuntimeError, match='use the "django_db" mark'):
        call_concurrently(1, count_authors)
