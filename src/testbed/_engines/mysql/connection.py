"""Connections to the server, and what every part of the engine needs to talk
to it: identifier quoting, error numbers, the names of the engine's own tables.

Server-level statements run on one admin connection with no current
database, reopened when the server has dropped it. Copies and locks open
connections of their own. Every connection gets the engine's session
settings (``_SESSION_SETUP``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseError

from testbed._engines._base import Engine, private_connection

OWN_PREFIX = "_testbed_"
MARK_TABLE = "_testbed_mark"
DIRTY_TABLE = "_testbed_dirty"

ER_DB_CREATE_EXISTS = 1007
ER_BAD_DB = 1049
ER_LOCK_WAIT_TIMEOUT = 1205
ER_NO_SUCH_TABLE = 1146
# Denied: database, table, or needs SUPER (for triggers with binary logging on).
ER_ACCESS_DENIED = frozenset({1044, 1142, 1227, 1419})
ER_VIEW_DEPENDENCY = frozenset({1146, 1356})
# Server gone away, connection lost, connection killed.
ER_CONNECTION_LOST = frozenset({2006, 2013, 1927, 4031})

# Mirrors mysqldump: NO_AUTO_VALUE_ON_ZERO keeps a copied id of 0 instead of
# drawing a new one, and the empty rest drops modes such as NO_ZERO_DATE or
# ANSI_QUOTES that would reject or misread the template's own DDL.
_SESSION_SETUP = (
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO', foreign_key_checks = 0, "
    "group_concat_max_len = 1073741824, lock_wait_timeout = {timeout}, "
    "innodb_lock_wait_timeout = {timeout}",
    # No shared locks on the rows INSERT ... SELECT reads, whatever the
    # project's OPTIONS say: copy_from reads databases others are using.
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    # The tracking triggers stay silent for the engine's own sessions, so
    # restoring rows does not log them again.
    "SET @testbed_quiet = 1",
)


def quote(name: str) -> str:
    """``name`` as a backtick-quoted identifier, embedded backticks doubled.

    Django's ``ops.quote_name`` returns names that already start and end with
    a backtick unchanged and does not double inner ones.
    """
    return "`" + name.replace("`", "``") + "`"


def errno_of(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class MySQLConnections(Engine):
    """The engine's connections; the concern mixins and the engine build on it."""

    # Seconds the engine's statements wait for a lock held by another session
    # (a test that left a transaction open) before failing.
    lock_wait_timeout = 30

    def __init__(self, settings: dict[str, Any], alias: str) -> None:
        super().__init__(settings, alias)
        self._mutex = threading.RLock()
        self._admin_conn: BaseDatabaseWrapper | None = None
        self._admin_used = 0.0
        self._mariadb: bool | None = None

    # --- connections -----------------------------------------------------------

    def _open(
        self, name: str = "", *, settings: dict[str, Any] | None = None
    ) -> BaseDatabaseWrapper:
        """A connected wrapper with the engine's session settings; any thread may use it."""
        if settings is None:
            wrapper = self.connect(name)
        else:
            wrapper = private_connection(settings, f"{self.alias}_source")
        wrapper.inc_thread_sharing()
        try:
            wrapper.ensure_connection()
            with wrapper.cursor() as cur:
                for statement in _SESSION_SETUP:
                    cur.execute(statement.format(timeout=int(self.lock_wait_timeout)))
                if self._is_mariadb(wrapper) is False:
                    # MySQL 8 otherwise serves information_schema.TABLES from
                    # a cache up to a day old, AUTO_INCREMENT included.
                    cur.execute("SET SESSION information_schema_stats_expiry = 0")
        except BaseException:
            wrapper.close()
            raise
        return wrapper

    def _is_mariadb(self, wrapper: BaseDatabaseWrapper) -> bool:
        if self._mariadb is None:
            self._mariadb = bool(getattr(wrapper, "mysql_is_mariadb", False))
        return self._mariadb

    @contextlib.contextmanager
    def _admin(self) -> Iterator[CursorWrapper]:
        """A cursor on the engine's server-level connection (no current database)."""
        with self._mutex:
            conn = self._admin_conn
            # A long idle connection may have been closed by wait_timeout.
            if (
                conn is not None
                and time.monotonic() - self._admin_used > 10
                and not conn.is_usable()
            ):
                conn.close()
                conn = None
            if conn is None:
                conn = self._admin_conn = self._open()
            try:
                with conn.cursor() as cur:
                    yield cur
            except DatabaseError as exc:
                if errno_of(exc) in ER_CONNECTION_LOST:
                    # Reconnect next time, with the session set up afresh.
                    self.close()
                raise
            finally:
                self._admin_used = time.monotonic()

    def close(self) -> None:
        with self._mutex:
            if self._admin_conn is not None:
                self._admin_conn.close()
                self._admin_conn = None
