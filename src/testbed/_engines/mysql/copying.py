"""Copying a database, for ``clone`` and ``copy_from``.

On one server, ``_copy_database`` replays the source's DDL and fills each
table with ``INSERT … SELECT``, several connections at a time; from another
server, ``_dump_and_load`` pipes ``mysqldump`` into ``mysql``. Either way the
source is only read.
"""

from __future__ import annotations

import abc
import contextlib
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseError

from testbed._engines._base import EngineError, closing_connection
from testbed._engines._pipe import pipe
from testbed._engines.mysql.connection import (
    DIRTY_TABLE,
    ER_VIEW_DEPENDENCY,
    MARK_TABLE,
    OWN_PREFIX,
    MySQLConnections,
    errno_of,
    quote,
)
from testbed._engines.mysql.schema import Schema, Table, read_schema


class MySQLCopying(MySQLConnections):
    """Copies of a template (``clone``) or of a database testbed does not own
    (``copy_from``)."""

    # Connections copying tables at once (benchmarks/mysql_clone.py). Small
    # clones are bound by CREATE TABLE, which waits on the disk: three
    # overlap those waits; more did not help on two cores.
    copy_workers = 3
    # Tables at least this big are filled with unique_checks=0, which lets
    # MariaDB bulk-load an empty table and sort its indexes once: a third
    # faster at 1 MB a table, slower for small ones.
    bulk_min_bytes = 512 * 1024

    # The engine proper's (engine.py): every copy creates its database and
    # marks it first.

    @staticmethod
    @abc.abstractmethod
    def _create_database(cur: CursorWrapper, name: str, suffix: str) -> None: ...

    @staticmethod
    @abc.abstractmethod
    def _write_mark(
        cur: CursorWrapper, name: str, mark: str, *, create: bool
    ) -> None: ...

    def _copy_database(
        self,
        source: str,
        target: str,
        mark: str,
        *,
        workers: int | None = None,
        unique_checks: bool | None = None,
    ) -> None:
        """Copy ``source`` into a new database ``target`` with SQL on one server.

        ``workers`` and ``unique_checks`` (None: off for big tables) exist
        for the benchmark; the defaults are its winner.
        """
        ddl = self._open()
        created = False
        try:
            with ddl.cursor() as cur:
                try:
                    schema = read_schema(cur, source)
                except DatabaseError as exc:
                    raise EngineError(
                        f"Cannot read database {source!r} to copy it: {exc}"
                    ) from exc
                self._create_database(
                    cur,
                    target,
                    f"CHARACTER SET {schema.charset} COLLATE {schema.collation}",
                )
                created = True
                # Marked first, so a copy cut short is still known as testbed's.
                self._write_mark(cur, target, mark, create=True)
            if workers is None:
                workers = self.copy_workers
            self._copy_tables(
                ddl, source, target, schema.tables, workers, unique_checks
            )
            with ddl.cursor() as cur:
                self._copy_objects(cur, source, target, schema)
        except BaseException as exc:
            if created:
                # This call created target a moment ago; no one else can be using it.
                with contextlib.suppress(DatabaseError), ddl.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS {quote(target)}")
            if isinstance(exc, DatabaseError):
                raise EngineError(
                    f"Cannot copy database {source!r} into {target!r}: {exc}"
                ) from exc
            raise
        finally:
            ddl.close()

    def _copy_tables(
        self,
        first: BaseDatabaseWrapper,
        source: str,
        target: str,
        tables: Sequence[Table],
        workers: int,
        unique_checks: bool | None,
    ) -> None:
        """Create and fill every table, ``workers`` connections at a time."""
        todo: queue.SimpleQueue[Table] = queue.SimpleQueue()
        for table in tables:
            todo.put(table)
        errors: list[BaseException] = []

        def work(conn: BaseDatabaseWrapper) -> None:
            with conn.cursor() as cur:
                # CREATE TABLE text names the table and its references
                # without a database: they resolve against the current one.
                cur.execute(f"USE {quote(target)}")
                checking = True
                while not errors:
                    try:
                        table = todo.get_nowait()
                    except queue.Empty:
                        break
                    check = unique_checks
                    if check is None:
                        check = table.size < self.bulk_min_bytes
                    if check != checking:
                        # The rows come from a database that satisfies its
                        # own unique keys.
                        cur.execute(f"SET SESSION unique_checks = {int(check)}")
                        checking = check
                    cur.execute(table.create)
                    cur.execute(
                        f"INSERT INTO {quote(target)}.{quote(table.name)} ({table.column_list}) "
                        f"SELECT {table.column_list} FROM {quote(source)}.{quote(table.name)}"
                    )
                if not checking:
                    cur.execute("SET SESSION unique_checks = 1")

        def run(conn: BaseDatabaseWrapper | None) -> None:
            try:
                if conn is None:
                    conn = self._open()
                    try:
                        work(conn)
                    finally:
                        conn.close()
                else:
                    work(conn)
            except BaseException as exc:
                errors.append(exc)

        workers = max(1, min(workers, len(tables)))
        threads = [
            threading.Thread(target=run, args=(None,), daemon=True)
            for _ in range(workers - 1)
        ]
        for thread in threads:
            thread.start()
        run(first)
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    def _copy_objects(
        self, cur: CursorWrapper, source: str, target: str, schema: Schema
    ) -> None:
        """Replay views, then triggers, routines and events, in ``target``."""
        cur.execute(f"USE {quote(target)}")
        pending = list(schema.views)
        while pending:
            # A view may select from another one: retry until all exist.
            failed: list[tuple[str, tuple[Any, ...]]] = []
            last_error: DatabaseError | None = None
            for view, row in pending:
                try:
                    with self._client_charset(cur, row[2], row[3]):
                        cur.execute(row[1])
                except DatabaseError as exc:
                    if errno_of(exc) not in ER_VIEW_DEPENDENCY:
                        raise
                    failed.append((view, row))
                    last_error = exc
            if len(failed) == len(pending):
                assert last_error is not None
                raise last_error
            pending = failed
        # After the data, like mysqldump, so copying rows fired none of them.
        for _, row in schema.triggers:
            with self._sql_mode(cur, row[1]), self._client_charset(cur, row[3], row[4]):
                cur.execute(row[2])
        for _, _, row in schema.routines:
            if row[2] is None:
                raise EngineError(
                    f"No permission to read the definition of routine {source}.{row[0]}."
                )
            with self._sql_mode(cur, row[1]), self._client_charset(cur, row[3], row[4]):
                cur.execute(row[2])
        for _, row in schema.events:
            cur.execute(
                "SET @testbed_time_zone = @@session.time_zone, SESSION time_zone = %s",
                [row[2]],
            )
            with self._sql_mode(cur, row[1]), self._client_charset(cur, row[4], row[5]):
                cur.execute(row[3])
            cur.execute("SET SESSION time_zone = @testbed_time_zone")
        cur.execute("USE information_schema")

    @staticmethod
    @contextlib.contextmanager
    def _sql_mode(cur: CursorWrapper, mode: str) -> Iterator[None]:
        # Triggers and routines keep the sql_mode they were created under.
        cur.execute("SET SESSION sql_mode = %s", [mode])
        try:
            yield
        finally:
            cur.execute("SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'")

    @staticmethod
    @contextlib.contextmanager
    def _client_charset(
        cur: CursorWrapper, charset: str, collation: str
    ) -> Iterator[None]:
        # Stored with the object, and used to read its string literals.
        cur.execute(
            "SET @testbed_cs = @@character_set_client, @testbed_coll = @@collation_connection, "
            "SESSION character_set_client = %s, collation_connection = %s",
            [charset, collation],
        )
        try:
            yield
        finally:
            cur.execute(
                "SET SESSION character_set_client = @testbed_cs, collation_connection = @testbed_coll"
            )

    def _dump_and_load(self, source: dict[str, Any], target: str, mark: str) -> None:
        """Copy a database on another server through ``mysqldump | mysql``."""
        from django.db.backends.mysql.client import DatabaseClient

        source_name = str(source["NAME"])
        dump_args, dump_env = DatabaseClient.settings_to_cmd_args_env(source, [])
        load_args, load_env = DatabaseClient.settings_to_cmd_args_env(
            self.settings_for(target), []
        )
        # The last argument is the database, which OPTIONS may override.
        load_args[-1] = target
        dump_cmd = [
            "mysqldump",
            *dump_args[1:-1],
            # A consistent snapshot that takes no table locks.
            "--single-transaction",
            "--skip-lock-tables",
            "--no-tablespaces",
            "--routines",
            "--events",
            "--triggers",
            f"--ignore-table={source_name}.{MARK_TABLE}",
            f"--ignore-table={source_name}.{DIRTY_TABLE}",
            source_name,
        ]
        try:
            charset, collation = self._source_charset(source)
        except DatabaseError as exc:
            raise EngineError(
                f"Cannot read database {source_name!r} to copy it: {exc}"
            ) from exc
        with self._admin() as cur:
            self._create_database(
                cur, target, f"CHARACTER SET {charset} COLLATE {collation}"
            )
            self._write_mark(cur, target, mark, create=True)
        try:
            dump, load = pipe(dump_cmd, load_args, dump_env=dump_env, load_env=load_env)
            if dump.code or load.code:
                raise EngineError(
                    f"Cannot copy database {source_name!r} into {target!r}: "
                    f"mysqldump exited {dump.code} ({dump.errors}), "
                    f"mysql exited {load.code} ({load.errors})."
                )
            with self._admin() as cur:
                # A source that is itself a tracked testbed database brings
                # tracking triggers along; the copy has no log for them.
                cur.execute(
                    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
                    [target],
                )
                for (trigger,) in cur.fetchall():
                    if trigger.startswith(OWN_PREFIX):
                        cur.execute(f"DROP TRIGGER {quote(target)}.{quote(trigger)}")
        except BaseException as exc:
            with contextlib.suppress(DatabaseError), self._admin() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {quote(target)}")
            if isinstance(exc, (OSError, DatabaseError)):
                raise EngineError(
                    f"Cannot copy database {source_name!r} into {target!r}: {exc}"
                ) from exc
            raise

    def _source_charset(self, source: dict[str, Any]) -> tuple[str, str]:
        with (
            closing_connection(self._open(settings=source)) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("SELECT @@character_set_database, @@collation_database")
            charset, collation = cur.fetchone()
        return str(charset), str(collation)
