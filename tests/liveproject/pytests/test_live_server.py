"""pytest-django's live_server on plain django_db tests: the server shares
the test's transaction, nothing is flushed; transaction=True is unchanged.
Run by tests/test_live_server.py with pytest, in file order (no -p randomly)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection, transaction
from live.helpers import committed, fetch
from notes.loaders import TEMPLATE_NOTES
from notes.models import Hit, Note, Tag


@pytest.fixture
def note(db: None) -> Note:
    return Note.objects.create(title="from a fixture")


# pytest-django runs this transactional test last (testbed runs the shared
# live_server tests with the TestCase ones): its flush empties the tables.
@pytest.mark.django_db(transaction=True)
def test_transaction_true_still_commits(live_server: Any) -> None:
    assert not connection.in_atomic_block
    assert fetch(live_server.url + "/hit/", method="POST") == (200, "1")
    assert committed("notes_hit") == 1


@pytest.mark.django_db
def test_server_sees_the_tests_data(live_server: Any, note: Note) -> None:
    assert connection.in_atomic_block  # a TestCase: rolled back, not flushed
    status, body = fetch(live_server.url + "/count/")
    assert (status, json.loads(body)["titles"]) == (200, ["from a fixture"])
    assert committed("notes_note") == 0


@pytest.mark.django_db
def test_the_test_sees_the_servers_writes(live_server: Any) -> None:
    assert fetch(live_server.url + "/hit/", method="POST") == (200, "1")
    assert Hit.objects.get().seen == 1
    assert committed("notes_hit") == 0


@pytest.mark.django_db
def test_twenty_parallel_requests(live_server: Any) -> None:
    start = threading.Barrier(20)

    def post(_: int) -> tuple[int, str]:
        start.wait(timeout=60)
        return fetch(live_server.url + "/hit/", method="POST")

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(post, range(20)))
    assert [status for status, _ in results] == [200] * 20
    assert sorted(int(body) for _, body in results) == list(range(1, 21))


@pytest.mark.django_db
def test_threads_the_test_starts(live_server: Any) -> None:
    def work() -> None:
        with transaction.atomic():
            Hit.objects.create(seen=Note.objects.count())

    Note.objects.create(title="visible to the thread")
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert list(Hit.objects.values_list("seen", flat=True)) == [1]


@pytest.mark.django_db
def test_bad_requests_do_not_break_the_test(live_server: Any) -> None:
    assert fetch(live_server.url + "/boom/")[0] == 500
    assert fetch(live_server.url + "/db-error-caught/") == (200, "caught")
    assert fetch(live_server.url + "/close/") == (200, "0")
    Note.objects.create(title="still in the transaction")
    assert json.loads(fetch(live_server.url + "/count/")[1])["notes"] == 1


def test_db_fixture_shares_too(db: None, live_server: Any) -> None:
    assert connection.in_atomic_block


@pytest.mark.template_database("notes")
def test_template_rolls_back_with_the_server_sharing_it(live_server: Any) -> None:
    # The server sees the template's clone, and what it writes is rolled
    # back with the test: no restore of the clone follows.
    assert connection.in_atomic_block
    assert json.loads(fetch(live_server.url + "/count/")[1])["notes"] == TEMPLATE_NOTES
    assert fetch(live_server.url + "/hit/", method="POST") == (200, "1")
    assert Hit.objects.count() == 1


@pytest.mark.django_db
def test_nothing_left_behind_and_nothing_flushed(live_server: Any) -> None:
    assert not Hit.objects.exists()
    assert not Note.objects.exists()
    assert committed("notes_hit") == 0
    # The data migration's row: no flush has run yet.
    assert list(Tag.objects.values_list("name", flat=True)) == ["seeded"]
