"""A connection every thread uses: what changes on it while it is shared."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
    """Mixed into a shared connection's cursor wrappers: every call that
    reaches the driver holds the lock."""

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return super().execute(*args, **kwargs)  # type: ignore[misc]

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return super().executemany(*args, **kwargs)  # type: ignore[misc]

    def callproc(self, *args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return super().callproc(*args, **kwargs)  # type: ignore[misc]

    def __getattr__(self, name: str) -> Any:
        # fetchone(), nextset(), close()... of the driver's cursor.
        attr = super().__getattr__(name)  # type: ignore[misc]
        return under_lock(attr) if callable(attr) else attr

    def __iter__(self) -> Iterator[Any]:
        rows = super().__iter__()  # type: ignore[misc]
        while True:
            with LOCK:
                try:
                    row = next(rows)
                except StopIteration:
                    return
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
