"""Which connection each thread gets, and how long it holds the lock.

- A live-server request (one HTTP request, ``handle_one_request``) holds
  the lock from its first use of a shared connection to its end, in a
  savepoint of its own on each: the blocks its views open nest inside it,
  and when it ends it is released, or rolled back if the request failed,
  broke the transaction or left blocks open.
- Another thread holds the lock for each of its atomic blocks, whole, and
  for each statement (``_connection.LockedCursor``).
- The test thread takes it for each statement and at the edges of its
  atomic blocks, never across one: it may be waiting for the server. Other
  threads' blocks, always whole, nest inside its blocks.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.servers.basehttp import WSGIRequestHandler
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.transaction import Atomic
from django.test import TestCase

from testbed._sharing._connection import Share
from testbed._sharing._state import LOCK, SharingError, local, shares

ATOMIC_ENTER = Atomic.__enter__
ATOMIC_EXIT = Atomic.__exit__
HANDLE_ONE_REQUEST = WSGIRequestHandler.handle_one_request
ROLLBACK_ATOMICS = TestCase.__dict__["_rollback_atomics"]


class _LeftOpen(SharingError):
    pass


class Unit:
    """One live-server request's hold on the shared connections."""

    def __init__(self) -> None:
        self.label = "a live-server request"
        self.holding = False
        self.guards: dict[str, tuple[Share, BaseDatabaseWrapper, Atomic]] = {}

    def use(self, share: Share) -> BaseDatabaseWrapper | None:
        """The connection to use for ``share``; None if it stopped being shared."""
        found = self.guards.get(share.alias)
        if found is not None:
            return found[1]
        acquired = not self.holding
        if acquired:
            LOCK.acquire()
        if shares.get(share.alias) is not share:  # stopped while we waited
            if acquired:
                LOCK.release()
            return None
        self.holding = True
        conn = share.connection
        guard = Atomic(share.alias, savepoint=True, durable=False)
        # Like TestCase's own blocks: a view's durable block may nest inside.
        guard._from_testcase = True  # type: ignore[attr-defined]
        self.guards[share.alias] = (share, conn, guard)
        try:
            ATOMIC_ENTER(guard)
        except BaseException:
            del self.guards[share.alias]
            if not self.guards:
                self.holding = False
                LOCK.release()
            raise
        return conn

    def finish(self) -> None:
        try:
            for share, conn, guard in reversed(list(self.guards.values())):
                left = _blocks_above(conn, guard)
                if left:
                    share.problems.append(
                        f"{self.label[0].upper()}{self.label[1:]} left {len(left)} "
                        f"transaction.atomic() block(s) open on database "
                        f"{share.alias!r}; testbed rolled them back so the test's "
                        "transaction survives. Exit every atomic block a view "
                        "enters (use `with transaction.atomic():`)."
                    )
                try:
                    for block in reversed(left):
                        block.__exit__(_LeftOpen, _LeftOpen("left open"), None)
                finally:
                    try:
                        ATOMIC_EXIT(guard, None, None, None)
                    except Exception:
                        # The request broke the transaction (a failed statement
                        # on PostgreSQL): Django rolled back to the savepoint.
                        pass
        finally:
            self.guards.clear()
            if self.holding:
                self.holding = False
                LOCK.release()


def _blocks_above(conn: BaseDatabaseWrapper, guard: Atomic) -> list[Atomic]:
    """The atomic blocks a request left open on ``conn`` (above its guard)."""
    blocks = conn.atomic_blocks
    position = next((i for i, b in enumerate(blocks) if b is guard), None)
    return [] if position is None else list(blocks[position + 1 :])


def handle_one_request(self: WSGIRequestHandler) -> None:
    # One HTTP request: a browser keeps its connection (and the thread
    # serving it) open across several, and between them holds nothing.
    unit = Unit()
    local.unit = unit
    try:
        HANDLE_ONE_REQUEST(self)
    finally:
        local.unit = None
        unit.finish()


def label_request(
    sender: Any, environ: dict[str, Any] | None = None, **kwargs: Any
) -> None:
    unit = getattr(local, "unit", None)
    if unit is not None and environ:
        method = environ.get("REQUEST_METHOD", "")
        unit.label = f"the live-server request {method} {environ.get('PATH_INFO', '')}"


# --- atomic blocks ------------------------------------------------------------------

# (thread, block) -> for each open entry into it: whether it holds the lock.
_held: dict[tuple[int, int], list[bool]] = {}


def _share_for(using: str | None) -> Share | None:
    alias = using or DEFAULT_DB_ALIAS
    share = shares.get(alias)
    if share is None:
        return None
    return share if connections[alias] is share.connection else None


def atomic_enter(self: Atomic) -> None:
    share = _share_for(self.using)
    if share is None:
        ATOMIC_ENTER(self)
        return
    LOCK.acquire()
    try:
        ATOMIC_ENTER(self)
    except BaseException:
        LOCK.release()
        raise
    me = threading.get_ident()
    if me == share.owner:
        LOCK.release()
    else:
        _held.setdefault((me, id(self)), []).append(True)


def atomic_exit(self: Atomic, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    key = (threading.get_ident(), id(self))
    entries = _held.get(key)
    if entries:
        entries.pop()
        if not entries:
            del _held[key]
        try:
            ATOMIC_EXIT(self, exc_type, exc_value, traceback)
        finally:
            LOCK.release()
        return
    if _share_for(self.using) is None:
        ATOMIC_EXIT(self, exc_type, exc_value, traceback)
        return
    with LOCK:
        ATOMIC_EXIT(self, exc_type, exc_value, traceback)


def rollback_atomics(cls: type[TestCase], atomics: dict[str, Atomic]) -> None:
    # TestCase marks its blocks for rollback, then exits them: no request may
    # run in between and see the flag.
    with LOCK:
        ROLLBACK_ATOMICS.__func__(cls, atomics)


def forget_blocks() -> None:
    _held.clear()


# --- which connection a thread gets -------------------------------------------------


class SharingHandler:
    """Mixed into ``django.db.connections``' class while anything is shared."""

    def __getitem__(self, alias: str) -> Any:
        share = shares.get(alias)
        if share is None:
            return super().__getitem__(alias)  # type: ignore[misc]
        if threading.get_ident() == share.owner:
            conn = super().__getitem__(alias)  # type: ignore[misc]
            if conn is not share.connection:
                share.follow(conn)
            return conn
        unit = getattr(local, "unit", None)
        if unit is None:
            return share.connection
        conn = unit.use(share)
        return conn if conn is not None else super().__getitem__(alias)  # type: ignore[misc]

    def __setitem__(self, alias: str, value: Any) -> None:
        share = shares.get(alias)
        mine = share is not None and threading.get_ident() == share.owner
        if share is not None and not mine and value is share.connection:
            return  # Django's live server handing its threads the test's connection
        super().__setitem__(alias, value)  # type: ignore[misc]
        if share is not None and mine:
            share.follow(value)

    def all(self, initialized_only: bool = False) -> list[Any]:
        if not initialized_only:
            return super().all()  # type: ignore[misc,no-any-return]
        # Another thread's connection is not this thread's to close or reset
        # (close_all() and close_old_connections() run after every request).
        me = threading.get_ident()
        found = []
        for alias in self:  # type: ignore[attr-defined]
            share = shares.get(alias)
            own = getattr(self._connections, alias, None)  # type: ignore[attr-defined]
            if own is None:
                continue
            if share is None or share.owner == me:
                found.append(self[alias])
            elif own is not share.connection:
                found.append(own)
        return found


_handler_classes: dict[type, type] = {}


def handler_class(cls: type) -> type:
    """``cls`` (the class of ``django.db.connections``) with ``SharingHandler``."""
    if cls not in _handler_classes:
        _handler_classes[cls] = type(
            cls.__name__, (SharingHandler, cls), {"__module__": cls.__module__}
        )
    return _handler_classes[cls]
