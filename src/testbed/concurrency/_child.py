"""The worker process: set Django up once, then run one call per batch.

Started by ``_pool`` as ``python -c`` with its stdin and stdout as the two
pipes of the protocol. Those are moved to private descriptors first, so a
call that reads stdin reads nothing and one that prints writes to stderr
(a file the parent copies to its own stderr), never into the protocol.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from testbed.concurrency._wire import (
    dumps,
    import_function,
    loads,
    pack_exception,
    restore_source_file,
    without_first_frame,
)

READY = pickle.dumps(("ready",))


@dataclass
class _State:
    # Per alias, the settings and the forbidden-message last applied.
    applied: dict[str, tuple[dict[str, Any], str | None]] = field(default_factory=dict)


@dataclass
class _Prepared:
    function: Callable[..., Any] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


class _Forbidden:
    """Stands in for a connection method the calling test may not use."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from django.test.testcases import (  # type: ignore[attr-defined]
            DatabaseOperationForbidden,
        )

        raise DatabaseOperationForbidden(self.message)


def main(inbox: Connection, hello: dict[str, Any]) -> None:
    outbox = _take_over_stdio()
    # Ctrl-C reaches the whole process group; the parent ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    # As in the test run: locmem e-mail, its DEBUG, 'testserver' allowed.
    setup_test_environment(debug=hello["debug"])
    outbox.send_bytes(pickle.dumps(("started", os.getpid())))
    state = _State()
    while True:
        try:
            job = pickle.loads(inbox.recv_bytes())
            prepared = _prepare(job, state)
            outbox.send_bytes(READY)
            inbox.recv_bytes()  # the start barrier's "go"
        except EOFError:
            break  # the parent is done, or gone
        result = _call(prepared, state)
        outbox.send_bytes(pickle.dumps(("result", result)))
    from django.db import connections

    connections.close_all()


def _take_over_stdio() -> Connection:
    outbox = Connection(os.dup(1), readable=False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return outbox


def _prepare(job: dict[str, Any], state: _State) -> _Prepared:
    try:
        _follow(job)
        _point(loads(job["settings"]), job["forbidden"], state)
        _clear_caches()
        spec = job["function"]
        if isinstance(spec, str):
            function = import_function(spec)
        else:
            function = loads(spec)
            restore_source_file(function, job["source_file"])
        kwargs = loads(job["kwargs"])
    except BaseException as exc:
        exc.add_note("(while loading the call in its worker process)")
        return _Prepared(error=pack_exception(exc))
    from django.db import connections

    for alias in job["warm"]:
        try:
            connections[alias].ensure_connection()
        except Exception:
            pass  # the call meets the error itself, and reports it
    return _Prepared(function, kwargs)


def _follow(job: dict[str, Any]) -> None:
    """Take on the parent's environment, import path and directory, as a
    fresh process started now would."""
    env = job["env"]
    if dict(os.environ) != env:
        os.environ.clear()
        os.environ.update(env)
    if sys.path != job["sys_path"]:
        sys.path[:] = job["sys_path"]
    if os.getcwd() != job["cwd"]:
        os.chdir(job["cwd"])


def _point(
    settings: dict[str, dict[str, Any]], forbidden: dict[str, str], state: _State
) -> None:
    """Point each alias at the database the parent's connection uses."""
    from django.db import connections

    for alias, settings_dict in settings.items():
        wanted = (settings_dict, forbidden.get(alias))
        if state.applied.get(alias) == wanted:
            continue
        for conn in connections.all(initialized_only=True):
            if conn.alias == alias:
                conn.close()
        connections.settings[alias] = settings_dict
        conn = connections.create_connection(alias)
        connections[alias] = conn
        message = forbidden.get(alias)
        if message is not None:
            for name in ("connect", "temporary_connection", "cursor", "chunked_cursor"):
                setattr(conn, name, _Forbidden(message))
        state.applied[alias] = wanted


def _clear_caches() -> None:
    """Forget per-process caches of database rows: a test may have flushed
    or replaced the database since the last batch."""
    from django.apps import apps

    if apps.is_installed("django.contrib.contenttypes"):
        from django.contrib.contenttypes.models import ContentType

        ContentType.objects.clear_cache()
    if apps.is_installed("django.contrib.sites"):
        from django.contrib.sites.models import Site

        Site.objects.clear_cache()


def _call(prepared: _Prepared, state: _State) -> dict[str, Any]:
    if prepared.error is not None or prepared.function is None:
        now = time.monotonic()
        return {"ok": False, "error": prepared.error, "started": now, "finished": now}
    started = time.monotonic()
    try:
        value = prepared.function(**prepared.kwargs)
    except BaseException as exc:
        finished = time.monotonic()
        result = {"ok": False, "error": pack_exception(without_first_frame(exc))}
    else:
        finished = time.monotonic()
        try:
            blob = dumps(
                value, what=f"the call's return value ({type(value).__name__})"
            )
        except Exception as exc:
            result = {"ok": False, "error": pack_exception(exc)}
        else:
            result = {"ok": True, "value": blob}
    finally:
        _after_call(state)
    return {**result, "started": started, "finished": finished}


def _after_call(state: _State) -> None:
    """Close every connection, so the test can flush, restore or drop the
    database; one a call left inside a transaction is replaced next time."""
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            state.applied.pop(conn.alias, None)
        try:
            conn.close()
        except Exception:
            state.applied.pop(conn.alias, None)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
