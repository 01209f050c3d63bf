"""The MariaDB/MySQL engine: naming, reading, marks, creating and cloning,
dropping and locking; the other concerns come from its bases."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseError

from testbed._engines._base import (
    DatabaseInfo,
    EngineError,
    like_prefix,
    shortened_name,
)
from testbed._engines.mysql.connection import (
    ER_BAD_DB,
    ER_DB_CREATE_EXISTS,
    ER_LOCK_WAIT_TIMEOUT,
    ER_NO_SUCH_TABLE,
    MARK_TABLE,
    errno_of,
    quote,
)
from testbed._engines.mysql.copying import MySQLCopying
from testbed._engines.mysql.tracking import MySQLTracking


class MySQLEngine(MySQLCopying, MySQLTracking):
    vendor = "mysql"
    max_name_length = 64

    # --- naming ----------------------------------------------------------------

    def derive_name(self, suffix: str, *, persistent: bool) -> str:
        return shortened_name(
            self.base_name, suffix, self.max_name_length, count_bytes=False
        )

    # --- reading ---------------------------------------------------------------

    def exists(self, name: str) -> bool:
        with self._admin() as cur:
            return self._exists(cur, name)

    @staticmethod
    def _exists(cur: CursorWrapper, name: str) -> bool:
        cur.execute(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            [name],
        )
        return any(row[0] == name for row in cur.fetchall())

    def read_mark(self, name: str) -> str | None:
        with self._admin() as cur:
            try:
                cur.execute(
                    f"SELECT mark FROM {quote(name)}.{quote(MARK_TABLE)} WHERE id = 1"
                )
            except DatabaseError as exc:
                if errno_of(exc) in (ER_BAD_DB, ER_NO_SUCH_TABLE):
                    return None
                raise
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def list_databases(self, prefix: str) -> list[DatabaseInfo]:
        with self._admin() as cur:
            cur.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s ESCAPE '!'",
                [like_prefix(prefix)],
            )
            # LIKE ignores case on these columns; database names may not.
            names = sorted(
                row[0] for row in cur.fetchall() if row[0].startswith(prefix)
            )
            if not names:
                return []
            placeholders = ", ".join(["%s"] * len(names))
            cur.execute(
                "SELECT TABLE_SCHEMA, SUM(COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0)), "
                "SUM(TABLE_NAME = %s) FROM information_schema.TABLES "
                f"WHERE TABLE_SCHEMA IN ({placeholders}) GROUP BY TABLE_SCHEMA",
                [MARK_TABLE, *names],
            )
            sizes: dict[str, int] = {}
            marked: list[str] = []
            for schema, size, has_mark in cur.fetchall():
                sizes[schema] = int(size or 0)
                if has_mark:
                    marked.append(schema)
            cur.execute(
                "SELECT DISTINCT DB FROM information_schema.PROCESSLIST "
                "WHERE DB IS NOT NULL AND ID <> CONNECTION_ID()"
            )
            in_use = {row[0] for row in cur.fetchall()}
        marks = self._read_marks(marked)
        return [
            DatabaseInfo(
                name=n,
                mark=marks.get(n),
                size_bytes=sizes.get(n, 0),
                in_use=n in in_use,
            )
            for n in names
        ]

    def _read_marks(self, names: Sequence[str]) -> dict[str, str]:
        if not names:
            return {}
        union = " UNION ALL ".join(
            f"SELECT %s, mark FROM {quote(n)}.{quote(MARK_TABLE)} WHERE id = 1"
            for n in names
        )
        with self._admin() as cur:
            try:
                cur.execute(union, list(names))
                return {str(n): str(m) for n, m in cur.fetchall()}
            except DatabaseError as exc:
                if errno_of(exc) not in (ER_BAD_DB, ER_NO_SUCH_TABLE):
                    raise
        # One of them was dropped meanwhile: read them one by one.
        marks = {n: self.read_mark(n) for n in names}
        return {n: m for n, m in marks.items() if m is not None}

    def server_version(self) -> str:
        with self._admin() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
        return str(row[0])

    # --- creating --------------------------------------------------------------

    def create_empty(self, name: str, mark: str) -> None:
        with self._admin() as cur:
            conn = self._admin_conn
            assert conn is not None
            suffix = conn.creation.sql_table_creation_suffix()
            self._create_database(cur, name, suffix)
            self._write_mark(cur, name, mark, create=True)

    @staticmethod
    def _create_database(cur: CursorWrapper, name: str, suffix: str) -> None:
        try:
            cur.execute(f"CREATE DATABASE {quote(name)} {suffix}".rstrip())
        except DatabaseError as exc:
            if errno_of(exc) == ER_DB_CREATE_EXISTS:
                raise EngineError(
                    f"Cannot create database {name!r}: it already exists."
                ) from exc
            raise EngineError(f"Cannot create database {name!r}: {exc}") from exc

    def write_mark(self, name: str, mark: str) -> None:
        with self._admin() as cur:
            self._write_mark(cur, name, mark, create=False)

    @staticmethod
    def _write_mark(cur: CursorWrapper, name: str, mark: str, *, create: bool) -> None:
        table = f"{quote(name)}.{quote(MARK_TABLE)}"
        if create:
            cur.execute(
                f"CREATE TABLE {table} (id TINYINT UNSIGNED NOT NULL PRIMARY KEY, "
                "mark LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL) ENGINE=InnoDB"
            )
        try:
            cur.execute(f"REPLACE INTO {table} (id, mark) VALUES (1, %s)", [mark])
        except DatabaseError as exc:
            if create or errno_of(exc) != ER_NO_SUCH_TABLE:
                raise
            MySQLEngine._write_mark(cur, name, mark, create=True)

    def seal(self, name: str, mark: str) -> None:
        # MariaDB has no read-only databases; the core never writes to a
        # sealed template and clones only read it.
        self.write_mark(name, mark)

    def clone(self, template: str, target: str, mark: str) -> None:
        self._copy_database(template, target, mark)

    def source_state(self, source: dict[str, Any]) -> str:
        # Cheap, and read-only: the tables' definitions (creation times),
        # their last writes (InnoDB keeps UPDATE_TIME in memory; after a
        # server restart it is empty, which counts as a change once) and
        # their sizes, as information_schema reports them.
        wrapper = self._open(str(source["NAME"]), settings=source)
        try:
            with wrapper.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*), MAX(CREATE_TIME), MAX(UPDATE_TIME), "
                    "SUM(TABLE_ROWS), SUM(DATA_LENGTH + INDEX_LENGTH) "
                    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                )
                row = cur.fetchone()
        finally:
            wrapper.close()
        return ":".join(str(part) for part in row)

    def copy_from(self, source: dict[str, Any], target: str, mark: str) -> None:
        source_name = str(source["NAME"])
        same_server = str(source.get("HOST") or "") == str(
            self.settings.get("HOST") or ""
        ) and str(source.get("PORT") or "") == str(self.settings.get("PORT") or "")
        if same_server:
            self._copy_database(source_name, target, mark)
        else:
            self._dump_and_load(source, target, mark)

    # --- destroying ------------------------------------------------------------

    def _drop(self, name: str) -> None:
        with self._mutex:
            self._tracking.pop(name, None)
        with self._admin() as cur:
            # DROP waits for sessions inside a transaction on the database;
            # wait briefly, then end the sessions using it and wait again.
            cur.execute("SET SESSION lock_wait_timeout = 2")
            try:
                cur.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
                return
            except DatabaseError as exc:
                if errno_of(exc) != ER_LOCK_WAIT_TIMEOUT:
                    raise EngineError(f"Cannot drop database {name!r}: {exc}") from exc
            finally:
                cur.execute(
                    f"SET SESSION lock_wait_timeout = {int(self.lock_wait_timeout)}"
                )
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()",
                [name],
            )
            for (session,) in cur.fetchall():
                with contextlib.suppress(DatabaseError):
                    cur.execute(f"KILL CONNECTION {int(session)}")
            try:
                cur.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
            except DatabaseError as exc:
                raise EngineError(f"Cannot drop database {name!r}: {exc}") from exc

    # --- coordination ----------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        # Server-wide lock names are limited to 64 characters.
        name = (
            key
            if len(key) <= 64
            else f"{key[:47]}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        )
        # A connection of its own, held for the lock's lifetime: the server
        # releases the lock when it closes, including when the holder dies.
        conn = self.connect("")
        conn.inc_thread_sharing()
        try:
            deadline = time.monotonic() + timeout
            with conn.cursor() as cur:
                while True:
                    cur.execute("SELECT GET_LOCK(%s, 0)", [name])
                    got = cur.fetchone()[0]
                    if got == 1:
                        break
                    if got is None:
                        raise EngineError(f"GET_LOCK({name!r}) failed.")
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"Lock {name!r} still held by another session after {timeout:g} s."
                        )
                    time.sleep(0.05)
            try:
                yield
            finally:
                with contextlib.suppress(DatabaseError), conn.cursor() as cur:
                    cur.execute("SELECT RELEASE_LOCK(%s)", [name])
        finally:
            conn.close()
