"""Connections to the server, and what every part of the engine needs to talk
to it: identifier and string quoting, SQLSTATE codes.

Server-level statements (``CREATE``/``DROP DATABASE``, marks, locks' holders)
run on one maintenance connection to the ``postgres`` database. Restores run
on a connection per tracked clone, kept open between them. A database testbed
does not own is read over a connection of its own, closed after each use.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from testbed._engines._base import (
    Engine,
    EngineError,
    closing_connection,
    private_connection,
)

DUPLICATE_DATABASE = "42P04"
OBJECT_IN_USE = "55006"
INSUFFICIENT_PRIVILEGE = "42501"
LOCK_NOT_AVAILABLE = "55P03"
DEADLOCK_DETECTED = "40P01"
UNDEFINED_FUNCTION = "42883"

_T = TypeVar("_T")


def quote(name: str) -> str:
    # ops.quote_name() leaves embedded double quotes alone.
    return '"' + name.replace('"', '""') + '"'


def sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a (wrapped) psycopg 2 or 3 error."""
    while exc is not None:
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code:
            return str(code)
        exc = exc.__cause__
    return None


def broken(wrapper: BaseDatabaseWrapper) -> bool:
    raw = wrapper.connection
    return raw is None or bool(raw.closed)


def string(value: str) -> str:
    """A SQL string literal, whatever standard_conforming_strings says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgreSQLConnections(Engine):
    """The engine's connections; the concern mixins and the engine build on it."""

    # How long a restore waits for a lock a leftover session holds before
    # giving up (the core then replaces the database).
    restore_lock_timeout: ClassVar[float] = 5.0

    def __init__(self, settings: dict[str, Any], alias: str) -> None:
        super().__init__(settings, alias)
        self._maint: BaseDatabaseWrapper | None = None
        self._maint_lock = threading.RLock()
        # One connection per tracked clone, kept between restores: reconnecting
        # costs more than the restore itself.
        self._restorers: dict[str, BaseDatabaseWrapper] = {}
        self._restorer_pids: dict[str, int] = {}
        self._version_num: int | None = None

    # --- connections -----------------------------------------------------------

    def connect(self, name: str) -> BaseDatabaseWrapper:
        wrapper = super().connect(name)
        options = dict(wrapper.settings_dict.get("OPTIONS") or {})
        # Django keys pools by alias, so one pool would serve every database
        # this engine opens, and a pooled connection outlives close(), which
        # blocks CREATE DATABASE … TEMPLATE and DROP.
        options.pop("pool", None)
        options.setdefault("application_name", "testbed")
        wrapper.settings_dict["OPTIONS"] = options
        return wrapper

    def _server(self, settings: dict[str, Any] | None = None) -> str:
        settings = settings or self.settings
        return f"{settings.get('HOST') or 'localhost'}:{settings.get('PORT') or 5432}"

    def _open(
        self, name: str, wrapper: BaseDatabaseWrapper | None = None
    ) -> BaseDatabaseWrapper:
        wrapper = wrapper or self.connect(name)
        # The core may call the engine from a helper thread.
        wrapper.inc_thread_sharing()
        try:
            wrapper.ensure_connection()
        except DatabaseError as exc:
            raise EngineError(
                f"Could not connect to PostgreSQL database {name!r} on "
                f"{self._server(wrapper.settings_dict)}: {exc}"
            ) from exc
        return wrapper

    def _maintenance(self) -> BaseDatabaseWrapper:
        if self._maint is None:
            self._maint = self._open("postgres")
        return self._maint

    def _close_maintenance(self) -> None:
        if self._maint is not None:
            with contextlib.suppress(DatabaseError):
                self._maint.close()
            self._maint = None

    def _run(self, action: Callable[[BaseDatabaseWrapper], _T]) -> _T:
        """``action`` on the maintenance connection, reconnecting once if the
        server dropped it (a restart, or an idle timeout)."""
        with self._maint_lock:
            for attempt in (1, 2):
                conn = self._maintenance()
                try:
                    return action(conn)
                except DatabaseError:
                    if attempt == 1 and broken(conn):
                        self._close_maintenance()
                        continue
                    raise
            raise AssertionError("unreachable")

    def _query(
        self, sql: str, params: list[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        def action(conn: BaseDatabaseWrapper) -> list[tuple[Any, ...]]:
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []

        return self._run(action)

    def _version(self) -> int:
        if self._version_num is None:
            rows = self._query("SELECT current_setting('server_version_num')::int")
            self._version_num = int(rows[0][0])
        return self._version_num

    def close(self) -> None:
        for name in list(self._restorers):
            self._close_restorer(name)
        with self._maint_lock:
            self._close_maintenance()

    # --- a database testbed does not own --------------------------------------

    def _source_connection(
        self, source: dict[str, Any]
    ) -> contextlib.AbstractContextManager[BaseDatabaseWrapper]:
        """A connection to the database ``source``, closed after the ``with``."""
        settings = {**source, "OPTIONS": dict(source.get("OPTIONS") or {})}
        settings["OPTIONS"].pop("pool", None)
        settings["OPTIONS"].setdefault("application_name", "testbed")
        wrapper = private_connection(settings, self.alias)
        return closing_connection(self._open(str(settings["NAME"]), wrapper))

    # --- one per tracked clone, for restores ----------------------------------

    def _restorer(self, name: str) -> BaseDatabaseWrapper:
        conn = self._restorers.get(name)
        if conn is not None and not broken(conn):
            return conn
        self._close_restorer(name)
        conn = self._open(name)
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('is_superuser') = 'on', pg_backend_pid()"
            )
            superuser, pid = cursor.fetchone()
            # Session settings, so that they cost nothing per restore (and a
            # change of session_replication_role discards cached plans).
            # replica, for a superuser: no trigger or rule fires, neither
            # foreign key checks nor the user's, so rows go back exactly as
            # they were. No hash or merge joins: the key logs have no
            # statistics, and an index lookup per logged key beats scanning
            # the table. No wait for the WAL flush: a crash can only lose a
            # whole restore, logs included, and the next restore redoes it.
            cursor.execute(
                "SELECT set_config('synchronous_commit', 'off', false),"
                " set_config('enable_hashjoin', 'off', false),"
                " set_config('enable_mergejoin', 'off', false),"
                " set_config('jit', 'off', false),"
                " set_config('lock_timeout', %s, false)",
                [f"{int(self.restore_lock_timeout * 1000)}ms"],
            )
            if superuser:
                cursor.execute("SET session_replication_role = replica")
        self._restorers[name] = conn
        self._restorer_pids[name] = int(pid)
        return conn

    def _close_restorer(self, name: str) -> None:
        conn = self._restorers.pop(name, None)
        self._restorer_pids.pop(name, None)
        if conn is not None:
            with contextlib.suppress(DatabaseError):
                conn.close()
