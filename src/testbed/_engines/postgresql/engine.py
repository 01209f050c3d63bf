"""The PostgreSQL engine: naming, reading, marks, creating and cloning,
dropping and locking; the other concerns come from its bases."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from django.db import DatabaseError

from testbed._engines._base import (
    DatabaseInfo,
    EngineError,
    closing_connection,
    like_prefix,
    shortened_name,
)
from testbed._engines.postgresql.connection import (
    DUPLICATE_DATABASE,
    OBJECT_IN_USE,
    broken,
    quote,
    sqlstate,
    string,
)
from testbed._engines.postgresql.copying import PostgreSQLCopying
from testbed._engines.postgresql.table_reset import keep_baseline_sql
from testbed._engines.postgresql.tracking import PostgreSQLTracking
from testbed._settings import ConfigurationError, testbed_settings

STRATEGIES = ("FILE_COPY", "WAL_LOG")
# Measured by benchmarks/pg_strategy.py: FILE_COPY won both data sets by
# 20-35% in the first measurements here; later runs on this noisy disk had
# the two trading places within 20% either way, so FILE_COPY stays the
# default and TESTBED['POSTGRESQL_STRATEGY'] picks WAL_LOG where that
# measures faster.
DEFAULT_STRATEGY = "FILE_COPY"


def _lock_id(key: str) -> int:
    digest = hashlib.sha256(f"testbed:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgreSQLEngine(PostgreSQLCopying, PostgreSQLTracking):
    vendor = "postgresql"
    max_name_length: ClassVar[int] = 63
    parallel_clones: ClassVar[bool] = True

    # --- naming -------------------------------------------------------------------

    def derive_name(self, suffix: str, *, persistent: bool) -> str:
        # PostgreSQL would silently truncate the name, so two long names
        # could collide; a hash of the full name keeps them apart.
        return shortened_name(
            self.base_name, suffix, self.max_name_length, count_bytes=True
        )

    # --- reading --------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return bool(self._query("SELECT 1 FROM pg_database WHERE datname = %s", [name]))

    def read_mark(self, name: str) -> str | None:
        rows = self._query(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        )
        return rows[0][0] if rows else None

    def list_databases(self, prefix: str) -> list[DatabaseInfo]:
        pattern = like_prefix(prefix)
        own = list(self._restorer_pids.values()) or [0]
        sql = """
            SELECT d.datname,
                   shobj_description(d.oid, 'pg_database'),
                   CASE WHEN has_database_privilege(d.oid, 'CONNECT')
                          OR pg_has_role('pg_read_all_stats', 'USAGE')
                        THEN pg_database_size(d.oid) END,
                   EXISTS (SELECT 1 FROM pg_stat_activity a
                           WHERE a.datid = d.oid AND a.pid <> pg_backend_pid()
                             AND a.pid <> ALL (%s)
                             AND a.backend_type <> 'autovacuum worker')
            FROM pg_database d
            WHERE d.datname LIKE %s ESCAPE '!'
            ORDER BY d.datname
        """
        try:
            rows = self._query(sql, [own, pattern])
        except DatabaseError:
            # pg_database_size() fails for a database dropped mid-query.
            rows = self._query(sql, [own, pattern])
        return [
            DatabaseInfo(name, mark, None if size is None else int(size), bool(busy))
            for name, mark, size, busy in rows
        ]

    def server_version(self) -> str:
        return str(self._version())

    def source_state(self, source: dict[str, Any]) -> str:
        # Row counters move with every committed write, DDL included (it
        # writes catalog rows), and with ANALYZE; the oid changes if the
        # database is re-created, stats_reset if the counters start over. A
        # session publishes its counts when it ends, or at the latest after
        # about 10 idle seconds.
        with self._source_connection(source) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT d.oid, s.tup_inserted, s.tup_updated, s.tup_deleted, s.stats_reset"
                " FROM pg_database d JOIN pg_stat_database s ON s.datid = d.oid"
                " WHERE d.datname = current_database()"
            )
            row = cursor.fetchone()
        return ":".join(str(part) for part in row)

    # --- creating ----------------------------------------------------------------------

    def _create(self, name: str, sql: str, what: str) -> None:
        try:
            self._query(sql)
        except DatabaseError as exc:
            if sqlstate(exc) == DUPLICATE_DATABASE:
                raise EngineError(
                    f"PostgreSQL database {name!r} already exists."
                ) from exc
            raise EngineError(f"Could not {what}: {exc}") from exc

    def _mark_new(self, name: str, mark: str) -> None:
        """Mark a database this call just created, dropping it if that fails:
        unmarked, nothing would ever be allowed to remove it."""
        try:
            self.write_mark(name, mark)
        except BaseException:
            with contextlib.suppress(DatabaseError):
                self._query(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)")
            raise

    def create_empty(self, name: str, mark: str) -> None:
        test = self.settings.get("TEST") or {}
        if test.get("COLLATION") is not None:
            raise EngineError(
                f"DATABASES[{self.alias!r}]['TEST']['COLLATION'] is set, but PostgreSQL "
                "cannot set a collation when it creates a database; remove it."
            )
        options = []
        if test.get("CHARSET"):
            options.append(f"ENCODING {string(str(test['CHARSET']))}")
        if test.get("TEMPLATE"):
            options.append(f"TEMPLATE {quote(str(test['TEMPLATE']))}")
        sql = f"CREATE DATABASE {quote(name)}"
        if options:
            sql += " WITH " + " ".join(options)
        self._create(name, sql, f"create PostgreSQL database {name!r}")
        self._mark_new(name, mark)

    def write_mark(self, name: str, mark: str) -> None:
        try:
            self._query(f"COMMENT ON DATABASE {quote(name)} IS {string(mark)}")
        except DatabaseError as exc:
            raise EngineError(
                f"Could not mark PostgreSQL database {name!r}: {exc}"
            ) from exc

    def seal(self, name: str, mark: str) -> None:
        self.write_mark(name, mark)
        try:
            self._query(
                f"ALTER DATABASE {quote(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
            )
            # A session left connected would make every clone wait 5 seconds
            # and fail; ending it now makes its next query fail instead.
            self._query(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                [name],
            )
        except DatabaseError as exc:
            raise EngineError(
                f"Could not seal PostgreSQL template {name!r}: {exc}"
            ) from exc

    def skip_disk_waits(self, name: str) -> None:
        try:
            self._query(f"ALTER DATABASE {quote(name)} SET synchronous_commit = off")
        except DatabaseError as exc:
            raise EngineError(
                f"Could not set synchronous_commit on PostgreSQL database {name!r}: {exc}"
            ) from exc

    def keep_baseline(self, name: str) -> None:
        try:
            with closing_connection(self._open(name)) as conn, conn.cursor() as cursor:
                cursor.execute(keep_baseline_sql())
        except DatabaseError as exc:
            raise EngineError(
                f"Could not keep the migrated state of PostgreSQL template {name!r}: {exc}"
            ) from exc

    def baseline_source(self, template: str) -> str:
        # Each clone carries its copy (see table_reset).
        return ""

    def strategy(self) -> str:
        """The ``CREATE DATABASE`` strategy: ``TESTBED['POSTGRESQL_STRATEGY']``,
        read on each use, or the measured default."""
        value = testbed_settings().get("POSTGRESQL_STRATEGY")
        if value is None:
            return DEFAULT_STRATEGY
        if isinstance(value, str) and value.upper() in STRATEGIES:
            return value.upper()
        raise ConfigurationError(
            f"settings.TESTBED['POSTGRESQL_STRATEGY'] is {value!r}; use "
            f"{' or '.join(repr(s) for s in STRATEGIES)}, or leave it out for "
            f"{DEFAULT_STRATEGY!r}."
        )

    def _copy_sql(self, source: str, target: str) -> str:
        sql = f"CREATE DATABASE {quote(target)} TEMPLATE {quote(source)}"
        if self._version() >= 150000:
            sql += f" STRATEGY {self.strategy()}"
        return sql

    def clone(self, template: str, target: str, mark: str) -> None:
        sql = self._copy_sql(template, target)
        try:
            self._query(sql)
        except DatabaseError as exc:
            code = sqlstate(exc)
            if code == DUPLICATE_DATABASE:
                raise EngineError(
                    f"PostgreSQL database {target!r} already exists."
                ) from exc
            hint = ""
            if code == OBJECT_IN_USE:
                hint = " Something is connected to the template, which only happens if it was not sealed."
            raise EngineError(
                f"Could not clone PostgreSQL template {template!r} into {target!r}: {exc}.{hint}"
            ) from exc
        self._mark_new(target, mark)

    # --- destroying --------------------------------------------------------------------------

    def _drop(self, name: str) -> None:
        self._close_restorer(name)
        quoted = quote(name)
        try:
            rows = self._query(
                "SELECT datistemplate FROM pg_database WHERE datname = %s", [name]
            )
            if rows and rows[0][0]:
                self._query(f"ALTER DATABASE {quoted} IS_TEMPLATE false")
            self._query(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
        except DatabaseError as exc:
            raise EngineError(
                f"Could not drop PostgreSQL database {name!r}: {exc}"
            ) from exc

    # --- coordination ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        lock_id = _lock_id(key)
        # Advisory locks belong to one database: every process must take them
        # in the same one. A session lock dies with its connection.
        conn = self._open("postgres")
        acquired = False
        try:
            deadline = time.monotonic() + timeout
            with conn.cursor() as cursor:
                while True:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
                    if cursor.fetchone()[0]:
                        acquired = True
                        break
                    if time.monotonic() >= deadline:
                        cursor.execute(
                            "SELECT string_agg(pid::text, ', ') FROM pg_locks"
                            " WHERE locktype = 'advisory' AND granted"
                            " AND classid = %s AND objid = %s AND objsubid = 1",
                            [(lock_id >> 32) & 0xFFFFFFFF, lock_id & 0xFFFFFFFF],
                        )
                        holders = cursor.fetchone()[0] or "unknown"
                        raise TimeoutError(
                            f"Timed out after {timeout:g}s waiting for testbed's lock "
                            f"{key!r} on PostgreSQL {self._server()}; held by server "
                            f"process {holders}."
                        )
                    time.sleep(0.05)
            yield
        finally:
            try:
                if acquired and not broken(conn):
                    with contextlib.suppress(DatabaseError), conn.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
            finally:
                conn.close()
