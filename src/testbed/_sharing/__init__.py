"""Sharing a test's database connections with every thread.

Django gives each thread its own connection, so a live server, or a thread
a test starts, cannot see what a ``TestCase`` wrote inside its transaction,
and what it writes itself is committed and survives the test. While an
alias is shared (``Sharing``), every thread gets the test thread's
connection object for it instead, and:

- One re-entrant lock, for all shared connections, serialises their use
  over whole units of work (``_threads``): Django keeps a connection's
  transaction state (atomic blocks, savepoint ids, ``needs_rollback``) on
  the wrapper, so a lock around single queries would let two threads'
  atomic blocks interleave, and mysqlclient must never see two threads at
  once.
- A live-server request runs in a savepoint of its own, so it cannot poison
  the test's transaction; atomic blocks its views open nest inside it.
- ``close()`` and ``close_if_unusable_or_obsolete()`` keep a connection
  open while it is in a transaction (``_connection``): Django closes
  connections after every request, and closing inside an atomic block ends
  the test's transaction. Commit and rollback stay forbidden inside it, as
  in any ``TestCase``.

While anything is shared, ``django.db.connections``, ``Atomic``, Django's
WSGI request handler and ``TestCase._rollback_atomics`` are patched; all of
it is put back when the last alias stops being shared.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.core.servers.basehttp import WSGIRequestHandler
from django.core.signals import request_started
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.transaction import Atomic
from django.test import TestCase

from testbed._sharing import _threads
from testbed._sharing._connection import Share
from testbed._sharing._state import LOCK, SharingError, shares

__all__ = ["SHARED_ENGINE", "Sharing", "SharingError", "on_shared_engine", "shared"]

# The ENGINE of testbed.backends.shared (a face, which core does not import).
SHARED_ENGINE = "testbed.backends.shared"


def on_shared_engine(aliases: Iterable[str]) -> bool:
    """Whether every alias in ``aliases`` uses the ``testbed.backends.shared`` engine."""
    aliases = list(aliases)
    return bool(aliases) and all(
        connections.settings[alias]["ENGINE"] == SHARED_ENGINE for alias in aliases
    )


def shared(conn: BaseDatabaseWrapper) -> bool:
    """Whether ``conn`` is shared with every thread right now."""
    share = shares.get(conn.alias)
    return share is not None and share.connection is conn


# --- patches, while anything is shared ---------------------------------------------

_saved: list[tuple[type, str, object]] = []


def _install() -> None:
    patches: list[tuple[type, str, object]] = [
        (Atomic, "__enter__", _threads.atomic_enter),
        (Atomic, "__exit__", _threads.atomic_exit),
        (WSGIRequestHandler, "handle_one_request", _threads.handle_one_request),
        (TestCase, "_rollback_atomics", classmethod(_threads.rollback_atomics)),
    ]
    for owner, name, value in patches:
        _saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, value)
    handler = type(connections)
    _saved.append((handler, "", None))
    connections.__class__ = _threads.handler_class(handler)
    request_started.connect(_threads.label_request, dispatch_uid=__name__)


def _uninstall() -> None:
    request_started.disconnect(dispatch_uid=__name__)
    while _saved:
        owner, name, value = _saved.pop()
        if name:
            setattr(owner, name, value)
        else:
            connections.__class__ = owner
    _threads.forget_blocks()


def _start(conn: BaseDatabaseWrapper) -> Share:
    me = threading.get_ident()
    share = shares.get(conn.alias)
    if share is None:
        if not shares:
            _install()
        share = Share(conn, me)
        shares[conn.alias] = share
    elif share.owner != me:
        raise SharingError(
            f"Database {conn.alias!r} is already shared by another thread's test; "
            "only one thread at a time can share a connection with the others."
        )
    else:
        share.follow(conn)
    share.count += 1
    return share


def _stop(share: Share) -> None:
    share.count -= 1
    if share.count > 0 or shares.get(share.alias) is not share:
        return
    del shares[share.alias]
    share.detach()
    if not shares:
        _uninstall()


class Sharing:
    """Every thread uses these connections (of the current thread) until ``stop()``.

    Start it once the test's transaction is open; stop it before that
    transaction is rolled back: ``stop()`` waits for the requests in flight.
    Sharings of one alias from one thread nest.
    """

    def __init__(self, connections: Iterable[BaseDatabaseWrapper]) -> None:
        self.connections = list(connections)
        self._shares: list[Share] = []
        self._problems: list[str] = []

    def start(self) -> None:
        with LOCK:
            try:
                for conn in self.connections:
                    self._shares.append(_start(conn))
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        with LOCK:
            self._collect()
            while self._shares:
                _stop(self._shares.pop())

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold every shared connection: no request or thread uses them meanwhile."""
        with LOCK:
            yield

    def _collect(self) -> None:
        for share in self._shares:
            self._problems += share.problems
            share.problems.clear()

    def problems(self) -> list[str]:
        """What requests did wrong since the last call (each has been undone)."""
        with LOCK:
            self._collect()
            found, self._problems = self._problems, []
        return found

    def check(self) -> None:
        """Raise ``SharingError`` if requests did something wrong (now undone)."""
        __tracebackhide__ = True
        found = self.problems()
        if found:
            raise SharingError("\n".join(found))

    def __enter__(self) -> Sharing:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
