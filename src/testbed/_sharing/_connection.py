"""A connection every thread uses: what changes on it while it is shared."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from testbed._sharing._state import LOCK


class Share:
    """One alias whose connection (of its owner, the test thread) every thread uses."""

    def __init__(self, connection: BaseDatabaseWrapper, owner: int) -> None:
        self.alias = connection.alias
        self.connection = connection
        self.owner = owner
        self.count = 0
        self.problems: list[str] = []
        self._saved: dict[str, Any] = {}
        self._attach()

    def _attach(self) -> None:
        conn = self.connection
        conn.inc_thread_sharing()
        self._saved = {
            name: conn.__dict__[name] for name in PATCHED if name in conn.__dict__
        }
        for name, make in PATCHED.items():
            setattr(conn, name, make(conn, _original(conn, name)))

    def detach(self) -> None:
        conn = self.connection
        for name in PATCHED:
            if name in self._saved:
                setattr(conn, name, self._saved[name])
            else:
                conn.__dict__.pop(name, None)
        conn.dec_thread_sharing()

    def follow(self, connection: BaseDatabaseWrapper) -> None:
        """Share ``connection`` instead: the test thread pointed the alias at it
        (a template clone, say)."""
        with LOCK:
            if connection is not self.connection:
                self.detach()
                self.connection = connection
                self._attach()


def _original(conn: BaseDatabaseWrapper, name: str) -> Callable[..., Any]:
    instance = conn.__dict__.get(name)
    if instance is not None:
        return instance  # type: ignore[no-any-return]
    # Looked up at each call: pytest-django's blocker swaps the class's
    # ensure_connection in and out.
    return lambda *args, **kwargs: getattr(type(conn), name)(conn, *args, **kwargs)


def under_lock(original: Callable[..., Any]) -> Callable[..., Any]:
    def locked(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return original(*args, **kwargs)

    return locked


def _locked(
    conn: BaseDatabaseWrapper, original: Callable[..., Any]
) -> Callable[..., Any]:
    return under_lock(original)


def _kept_open(
    conn: BaseDatabaseWrapper, original: Callable[[], None]
) -> Callable[[], None]:
    def keep_open() -> None:
        with LOCK:
            if conn.in_atomic_block:
                return  # closing would end the test's transaction
            original()

    return keep_open


def _locking_cursors(
    conn: BaseDatabaseWrapper, original: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    def make_cursor(cursor: Any) -> Any:
        wrapper = original(cursor)
        wrapper.__class__ = _locked_cursor_class(type(wrapper))
        return wrapper

    return make_cursor


# Set on a shared connection (as instance attributes), and what makes each.
PATCHED: dict[str, Callable[[BaseDatabaseWrapper, Callable[..., Any]], Any]] = {
    "close": _kept_open,
    "close_if_unusable_or_obsolete": _kept_open,
    "close_if_health_check_failed": _locked,
    "ensure_connection": _locked,
    "make_cursor": _locking_cursors,
    "make_debug_cursor": _locking_cursors,
}


class LockedCursor:
    """Mixed into a shared connection's cursor wrappers: a statement and the
    reading of its rows happen under the lock, in one go.

    The rows are read as the statement runs: SQLite steps a statement as its
    rows are fetched, and while one is unfinished another thread's
    statement on the connection can fail ("cannot open savepoint - SQL
    statements in progress"). Other calls that reach the driver hold the
    lock too.
    """

    _testbed_rows: Sequence[Any] | None = None
    _testbed_next = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            result = super().execute(*args, **kwargs)  # type: ignore[misc]
            self._testbed_read()
            return result

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            result = super().executemany(*args, **kwargs)  # type: ignore[misc]
            self._testbed_read()
            return result

    def callproc(self, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            result = super().callproc(*args, **kwargs)  # type: ignore[misc]
            self._testbed_read()
            return result

    def _testbed_read(self) -> None:
        cursor = self.cursor
        self._testbed_rows, self._testbed_next = None, 0
        if cursor.description is not None:
            with self.db.wrap_database_errors:
                self._testbed_rows = cursor.fetchall()

    def _testbed_take(self, count: int | None) -> Sequence[Any]:
        assert self._testbed_rows is not None
        start = self._testbed_next
        stop = len(self._testbed_rows) if count is None else start + count
        self._testbed_next = min(stop, len(self._testbed_rows))
        return self._testbed_rows[start:stop]

    def fetchone(self) -> Any:
        if self._testbed_rows is None:
            return self.__getattr__("fetchone")()
        rows = self._testbed_take(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> Any:
        if self._testbed_rows is None:
            return self.__getattr__("fetchmany")(*(() if size is None else (size,)))
        return self._testbed_take(self.cursor.arraysize if size is None else size)

    def fetchall(self) -> Any:
        if self._testbed_rows is None:
            return self.__getattr__("fetchall")()
        return self._testbed_take(None)

    def __getattr__(self, name: str) -> Any:
        # nextset(), close()... of the driver's cursor.
        attr = super().__getattr__(name)  # type: ignore[misc]
        return under_lock(attr) if callable(attr) else attr

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row


_cursor_classes: dict[type, type] = {}


def _locked_cursor_class(cls: type) -> type:
    if issubclass(cls, LockedCursor):
        return cls
    if cls not in _cursor_classes:
        _cursor_classes[cls] = type(
            cls.__name__, (LockedCursor, cls), {"__module__": __name__}
        )
    return _cursor_classes[cls]
