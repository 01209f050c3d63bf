"""Sharing a test's connection with every thread (testbed._sharing), in process,
on each engine: on its own ENGINE with ``Sharing``, and on the shared
engine, which shares while a TestCase transaction is open.

The test's transaction is made as TestCase makes it: an atomic block marked
``_from_testcase``, rolled back at the end.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.servers.basehttp import WSGIRequestHandler
from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.transaction import Atomic, TransactionManagementError
from django.test import TestCase
from django.test.utils import override_settings

from testbed import SharingError
from testbed._sharing import Sharing, on_shared_engine, shared


@contextmanager
def in_test_transaction(alias: str) -> Iterator[BaseDatabaseWrapper]:
    """A TestCase's transaction on ``alias``, shared with every thread."""
    conn = connections[alias]
    block = transaction.atomic(using=alias)
    block._from_testcase = True  # type: ignore[attr-defined]
    block.__enter__()
    sharing = None
    if not on_shared_engine([alias]):  # the shared engine shares by itself
        sharing = Sharing([conn])
        sharing.start()
    try:
        yield conn
    finally:
        if sharing is not None:
            sharing.stop()
        transaction.set_rollback(True, using=alias)
        block.__exit__(None, None, None)


def in_thread(func: Callable[[], Any]) -> Any:
    """``func()`` run in a new thread; its result, or its exception raised here."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, func()))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="helper")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def count(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM item")
        return int(cursor.fetchone()[0])


def insert(alias: str, pk: int, name: str = "x") -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("INSERT INTO item (id, name) VALUES (%s, %s)", [pk, name])


def committed(alias: str) -> int:
    """Rows a connection of its own sees: only committed ones."""
    other = connections.create_connection(alias)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM item")
            return int(cursor.fetchone()[0])
    finally:
        other.close()


def test_threads_use_the_tests_transaction(db_alias: str) -> None:
    with in_test_transaction(db_alias) as conn:
        insert(db_alias, 1)
        assert in_thread(lambda: connections[db_alias]) is conn
        assert in_thread(lambda: count(db_alias)) == 1
        in_thread(lambda: insert(db_alias, 2))
        assert count(db_alias) == 2
        assert committed(db_alias) == 0
    # Rolled back with the test.
    assert count(db_alias) == 0
    assert committed(db_alias) == 0


def test_atomic_blocks_of_twenty_threads_take_turns(db_alias: str) -> None:
    start = threading.Barrier(20)

    def write(pk: int) -> int:
        start.wait(timeout=60)
        try:
            with transaction.atomic(using=db_alias):
                seen = count(db_alias)
                insert(db_alias, pk)
                return seen
        finally:
            connections.close_all()

    with in_test_transaction(db_alias):
        with ThreadPoolExecutor(20) as pool:
            seen = list(pool.map(write, range(1, 21)))
        # Each block saw the rows of the blocks before it, never half of one.
        assert sorted(seen) == list(range(20))
        assert count(db_alias) == 20
    assert committed(db_alias) == 0


def test_statements_and_blocks_of_many_threads_interleave(db_alias: str) -> None:
    # A statement and the reading of its rows happen in one go: on SQLite a
    # write with unread rows (INSERT … RETURNING) makes another thread's
    # savepoint fail ("SQL statements in progress").
    def work(n: int) -> int:
        try:
            read = 0
            for i in range(10):
                with connections[db_alias].cursor() as cursor:
                    cursor.execute(
                        "INSERT INTO item (id, name) VALUES (%s, 'r') RETURNING id",
                        [1000 * n + i],
                    )
                    assert cursor.fetchone() == (1000 * n + i,)
                    cursor.execute("SELECT id FROM item")
                    while rows := cursor.fetchmany(7):
                        read += len(rows)
                with transaction.atomic(using=db_alias):
                    insert(db_alias, 1000 * n + 500 + i)
            return read
        finally:
            connections.close_all()

    with in_test_transaction(db_alias):
        with ThreadPoolExecutor(8) as pool:
            read = list(pool.map(work, range(1, 9)))
        assert count(db_alias) == 160
        assert all(rows > 0 for rows in read)
    assert committed(db_alias) == 0


def test_a_threads_block_holds_the_connection_until_it_ends(db_alias: str) -> None:
    events: list[str] = []
    inside, go = threading.Event(), threading.Event()

    def holder() -> None:
        with transaction.atomic(using=db_alias):
            insert(db_alias, 1)
            inside.set()
            go.wait(timeout=60)
            events.append("holder leaves its block")

    def other() -> None:
        inside.wait(timeout=60)
        go.set()
        events.append(f"other counts {count(db_alias)}")

    with in_test_transaction(db_alias):
        threads = [threading.Thread(target=f) for f in (holder, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert events == ["holder leaves its block", "other counts 1"]


def test_a_failed_block_in_a_thread_rolls_back_to_its_savepoint(db_alias: str) -> None:
    def fail() -> None:
        with transaction.atomic(using=db_alias):
            insert(db_alias, 2)
            insert(db_alias, 1)  # the key exists

    with in_test_transaction(db_alias):
        insert(db_alias, 1)
        with pytest.raises(IntegrityError):
            in_thread(fail)
        assert count(db_alias) == 1  # the test's transaction is intact


def test_closing_keeps_the_tests_transaction(db_alias: str) -> None:
    def close() -> int:
        connections[db_alias].close()
        connections[db_alias].close_if_unusable_or_obsolete()
        connections.close_all()
        return count(db_alias)

    with in_test_transaction(db_alias) as conn:
        insert(db_alias, 1)
        assert in_thread(close) == 1
        conn.close()
        assert count(db_alias) == 1


def test_commit_and_rollback_stay_forbidden(db_alias: str) -> None:
    with in_test_transaction(db_alias):
        insert(db_alias, 1)
        for call in (transaction.commit, transaction.rollback):
            with pytest.raises(TransactionManagementError) as excinfo:
                in_thread(lambda call=call: call(using=db_alias))
            assert excinfo.value.args == (
                "This is forbidden when an 'atomic' block is active.",
            )
        assert committed(db_alias) == 0
        assert count(db_alias) == 1


def test_a_thread_that_never_leaves_its_block_times_the_test_out(
    db_alias: str,
) -> None:
    inside, go = threading.Event(), threading.Event()

    def holder() -> None:
        with transaction.atomic(using=db_alias):
            inside.set()
            go.wait(timeout=60)

    with in_test_transaction(db_alias):
        thread = threading.Thread(target=holder, name="stuck")
        thread.start()
        inside.wait(timeout=60)
        try:
            with (
                override_settings(TESTBED={"LOCK_TIMEOUT": 0.2}),
                pytest.raises(SharingError) as excinfo,
            ):
                count(db_alias)
        finally:
            go.set()
            thread.join()
    assert excinfo.value.args == (
        "testbed waited 0.2s for a database connection this test shares with "
        "every thread, but thread 'stuck' still holds it. A request or thread "
        "that never finishes, or that waits for this thread inside an atomic "
        "block, keeps it; set TESTBED['LOCK_TIMEOUT'] to wait longer.",
    )


def test_the_alias_follows_the_test_thread(db_alias: str) -> None:
    with in_test_transaction(db_alias):
        other = connections.create_connection(db_alias)
        original = connections[db_alias]
        connections[db_alias] = other
        try:
            assert in_thread(lambda: connections[db_alias]) is other
            assert shared(other)
            assert not shared(original)
        finally:
            connections[db_alias] = original
            other.close()
        assert in_thread(lambda: connections[db_alias]) is original


def test_one_thread_at_a_time_shares_an_alias(db_alias: str) -> None:
    def share_too() -> None:
        with Sharing([connections[db_alias]]):
            pass

    with in_test_transaction(db_alias), pytest.raises(SharingError) as excinfo:
        in_thread(share_too)
    assert excinfo.value.args == (
        f"Database {db_alias!r} is already shared by another thread's test; only "
        "one thread at a time can share a connection with the others.",
    )


def test_everything_is_put_back(db_alias: str) -> None:
    handler = type(connections)
    patched = (
        Atomic.__enter__,
        Atomic.__exit__,
        WSGIRequestHandler.handle_one_request,
        TestCase.__dict__["_rollback_atomics"],
    )
    with in_test_transaction(db_alias) as conn:
        assert shared(conn)
        assert conn.allow_thread_sharing
        assert type(connections) is not handler
        assert "close" in conn.__dict__
    assert not shared(conn)
    assert not conn.allow_thread_sharing
    assert type(connections) is handler
    assert (
        Atomic.__enter__,
        Atomic.__exit__,
        WSGIRequestHandler.handle_one_request,
        TestCase.__dict__["_rollback_atomics"],
    ) == patched
    assert not {"close", "make_cursor", "ensure_connection"} & set(conn.__dict__)
    # Other threads get connections of their own again.
    assert in_thread(lambda: connections[db_alias]) is not conn


def test_a_block_that_is_not_a_tests_shares_nothing(db_alias: str) -> None:
    with transaction.atomic(using=db_alias):
        insert(db_alias, 1)
        assert not shared(connections[db_alias])
        assert in_thread(lambda: connections[db_alias]) is not connections[db_alias]
    assert committed(db_alias) == 1
