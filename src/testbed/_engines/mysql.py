"""MariaDB and MySQL: clones are copied table by table on the server.

Neither server can create a database from a template, so a clone is built
from the template's own DDL (``SHOW CREATE ...``) and filled with
``INSERT INTO clone.t SELECT ... FROM template.t``, which never leaves the
server. ``benchmarks/mysql_clone.py`` measures this against Django's
``mysqldump | mysql`` and variants.

The ownership mark lives in a one-row table ``_testbed_mark`` inside the
database (MySQL 8 has no database comments). Tables, and triggers, whose
names start with ``_testbed_`` belong to the engine: they are never copied
into a clone and never restored.

Per-test restore: ``prepare_tracking`` adds row triggers that log the primary
key of every row a test inserts, updates or deletes into ``_testbed_dirty``.
``_reset_tracked`` copies just those rows back from the template, which the
server can read across databases, and puts AUTO_INCREMENT counters back. What
triggers cannot see (TRUNCATE, DDL) changes the schema signature, and then
nothing is touched and the core makes a fresh clone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseError

from testbed._engines._base import DatabaseInfo, Engine, EngineError

OWN_PREFIX = "_testbed_"
MARK_TABLE = "_testbed_mark"
DIRTY_TABLE = "_testbed_dirty"

_ER_DB_CREATE_EXISTS = 1007
_ER_BAD_DB = 1049
_ER_LOCK_WAIT_TIMEOUT = 1205
_ER_NO_SUCH_TABLE = 1146
# Denied: database, table, or needs SUPER (for triggers with binary logging on).
_ER_ACCESS_DENIED = frozenset({1044, 1142, 1227, 1419})
_ER_VIEW_DEPENDENCY = frozenset({1146, 1356})
# Server gone away, connection lost, connection killed.
_ER_CONNECTION_LOST = frozenset({2006, 2013, 1927, 4031})

# Primary key types whose values survive a round trip through the log's
# VARCHAR(255) column and back as an ``IN (...)`` parameter that still uses
# the primary key index.
_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
_TEXT_KEY_TYPES = frozenset({"char", "varchar", "uuid"})
_TEXT_KEY_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8", "latin1", "ascii"})

# Rows per ``IN (...)`` list when restoring logged rows.
_ROW_BATCH = 1000

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


def _like_prefix(prefix: str) -> str:
    # '!' rather than '\' as the escape: a backslash means something else
    # under sql_mode NO_BACKSLASH_ESCAPES.
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def _errno(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _utf8_literal(text: str) -> str:
    # A hex literal needs no escaping whatever the sql_mode.
    return f"_utf8mb4 X'{text.encode().hex()}'" if text else "''"


def _innodb_name(text: str) -> str:
    # InnoDB's dictionary names tables "db/table" in the filename character
    # set; this covers ASCII, and prepare_tracking checks every table was found.
    return "".join(
        c if c.isascii() and (c.isalnum() or c == "_") else f"@{ord(c):04x}"
        for c in text
    )


@dataclass
class _Table:
    name: str
    engine: str | None
    size: int
    # Columns an INSERT may set, in order: generated ones are computed, and
    # invisible ones are left out of SELECT * but still hold data.
    columns: list[str]
    create: str = ""

    @property
    def column_list(self) -> str:
        return ", ".join(quote(c) for c in self.columns)


@dataclass
class _Schema:
    charset: str
    collation: str
    tables: list[_Table]
    # (name, SHOW CREATE result row), each to be replayed in this order.
    views: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    triggers: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    routines: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    events: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


@dataclass
class _TrackedTable:
    name: str
    column_list: str
    # The single-column primary key rows are logged by; None logs the table.
    pk: str | None
    pk_is_int: bool
    # The template's row count, as InnoDB estimates it.
    rows: int


@dataclass
class _Probe:
    ddl: int | None = None
    program_ddl: int | None = None
    counters: dict[str, int | None] = field(default_factory=dict)
    logged: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Tracking:
    template: str
    # Per part of the schema, a digest of its information_schema rows.
    signature: dict[str, str]
    # The server's DDL statement counters when the signature was last known
    # to hold.
    ddl: int | None
    program_ddl: int | None
    tables: dict[str, _TrackedTable]
    # The template's counters, which every reset puts back.
    auto_increment: dict[str, int | None]
    # Tables whose rows a change to the key table can change through ON
    # DELETE/UPDATE CASCADE or SET NULL, which do not fire triggers.
    cascades: dict[str, set[str]]
    # Non-transactional tables: a rolled back test keeps their changes but
    # loses the log entry, so they are restored every time.
    always: set[str]
    # Tables with the user's own triggers: restoring their rows would fire
    # them, with effects elsewhere.
    user_triggered: set[str]


# What the schema signature reads: information_schema table -> (its schema
# column, the columns that define the objects). "Program" parts are costly
# to read (MariaDB parses every trigger) and are reread only when statements
# that change them ran.
_SIGNATURE_PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "TABLES": (
        "TABLE_SCHEMA",
        (
            "TABLE_NAME",
            "TABLE_TYPE",
            "ENGINE",
            "ROW_FORMAT",
            "TABLE_COLLATION",
            "CREATE_OPTIONS",
        ),
    ),
    "COLUMNS": (
        "TABLE_SCHEMA",
        (
            "TABLE_NAME",
            "COLUMN_NAME",
            "ORDINAL_POSITION",
            "COLUMN_DEFAULT",
            "IS_NULLABLE",
            "COLUMN_TYPE",
            "CHARACTER_SET_NAME",
            "COLLATION_NAME",
            "EXTRA",
            "GENERATION_EXPRESSION",
        ),
    ),
    "STATISTICS": (
        "TABLE_SCHEMA",
        (
            "TABLE_NAME",
            "INDEX_NAME",
            "SEQ_IN_INDEX",
            "COLUMN_NAME",
            "NON_UNIQUE",
            "SUB_PART",
            "INDEX_TYPE",
        ),
    ),
    "REFERENTIAL_CONSTRAINTS": (
        "CONSTRAINT_SCHEMA",
        (
            "TABLE_NAME",
            "CONSTRAINT_NAME",
            "REFERENCED_TABLE_NAME",
            "UPDATE_RULE",
            "DELETE_RULE",
        ),
    ),
    "KEY_COLUMN_USAGE": (
        "TABLE_SCHEMA",
        (
            "TABLE_NAME",
            "CONSTRAINT_NAME",
            "COLUMN_NAME",
            "ORDINAL_POSITION",
            "REFERENCED_TABLE_SCHEMA",
            "REFERENCED_TABLE_NAME",
            "REFERENCED_COLUMN_NAME",
        ),
    ),
    "CHECK_CONSTRAINTS": ("CONSTRAINT_SCHEMA", ("CONSTRAINT_NAME", "CHECK_CLAUSE")),
    "TRIGGERS": (
        "TRIGGER_SCHEMA",
        (
            "TRIGGER_NAME",
            "EVENT_OBJECT_TABLE",
            "EVENT_MANIPULATION",
            "ACTION_TIMING",
            "ACTION_ORDER",
            "ACTION_STATEMENT",
            "SQL_MODE",
            "DEFINER",
        ),
    ),
    "VIEWS": (
        "TABLE_SCHEMA",
        ("TABLE_NAME", "VIEW_DEFINITION", "CHECK_OPTION", "DEFINER", "SECURITY_TYPE"),
    ),
    "ROUTINES": (
        "ROUTINE_SCHEMA",
        ("ROUTINE_NAME", "ROUTINE_TYPE", "ROUTINE_DEFINITION", "LAST_ALTERED"),
    ),
    "EVENTS": (
        "EVENT_SCHEMA",
        ("EVENT_NAME", "EVENT_DEFINITION", "LAST_ALTERED", "STATUS"),
    ),
}
_TABLE_PARTS = (
    "TABLES",
    "COLUMNS",
    "STATISTICS",
    "REFERENTIAL_CONSTRAINTS",
    "KEY_COLUMN_USAGE",
    "CHECK_CONSTRAINTS",
    "INNODB",
)
_PROGRAM_PARTS = ("TRIGGERS", "VIEWS", "ROUTINES", "EVENTS")
_ALL_PARTS = _TABLE_PARTS + _PROGRAM_PARTS

# Status counters of statements that can change a schema. Over-inclusive on
# purpose (CREATE USER, another database's DDL): a count that moved only
# costs a full read of the signature. Percent signs doubled: these go into
# statements that take parameters.
_ANY_DDL = (
    "(VARIABLE_NAME LIKE 'COM!_ALTER!_%%' ESCAPE '!' OR VARIABLE_NAME LIKE 'COM!_CREATE!_%%' ESCAPE '!' "
    "OR VARIABLE_NAME LIKE 'COM!_DROP!_%%' ESCAPE '!' OR VARIABLE_NAME IN ('COM_RENAME_TABLE', "
    "'COM_TRUNCATE', 'COM_OPTIMIZE', 'COM_REPAIR', 'COM_IMPORT', 'COM_STMT_EXECUTE', "
    "'COM_EXECUTE_SQL', 'COM_EXECUTE_IMMEDIATE', 'COM_CALL_PROCEDURE'))"
)
_PROGRAM_DDL = (
    "(VARIABLE_NAME LIKE '%%TRIGGER%%' OR VARIABLE_NAME LIKE '%%VIEW%%' OR VARIABLE_NAME LIKE '%%PROCEDURE%%' "
    "OR VARIABLE_NAME LIKE '%%FUNCTION%%' OR VARIABLE_NAME LIKE '%%EVENT%%' OR VARIABLE_NAME LIKE '%%PACKAGE%%' "
    "OR VARIABLE_NAME LIKE '%%EXECUTE%%')"
)


class MySQLEngine(Engine):
    vendor = "mysql"
    max_name_length = 64

    # Connections copying tables at once (benchmarks/mysql_clone.py). Small
    # clones are bound by CREATE TABLE, which waits on the disk: three
    # overlap those waits; more did not help on two cores.
    copy_workers = 3
    # Tables at least this big are filled with unique_checks=0, which lets
    # MariaDB bulk-load an empty table and sort its indexes once: a third
    # faster at 1 MB a table, slower for small ones.
    bulk_min_bytes = 512 * 1024
    # Seconds the engine's statements wait for a lock held by another session
    # (a test that left a transaction open) before failing.
    lock_wait_timeout = 30

    def __init__(self, settings: dict[str, Any], alias: str) -> None:
        super().__init__(settings, alias)
        self._mutex = threading.RLock()
        self._admin_conn: BaseDatabaseWrapper | None = None
        self._admin_used = 0.0
        self._mariadb: bool | None = None
        self._tracking: dict[str, _Tracking] = {}

    # --- connections -----------------------------------------------------------

    def _open(
        self, name: str = "", *, settings: dict[str, Any] | None = None
    ) -> BaseDatabaseWrapper:
        """A connected wrapper with the engine's session settings; any thread may use it."""
        if settings is None:
            wrapper = self.connect(name)
        else:
            from django.db.utils import load_backend

            backend = load_backend(settings["ENGINE"])
            wrapper = backend.DatabaseWrapper(
                settings, f"__testbed_{self.alias}_source"
            )
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
                if _errno(exc) in _ER_CONNECTION_LOST:
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

    # --- naming ----------------------------------------------------------------

    def derive_name(self, suffix: str, *, persistent: bool) -> str:
        name = f"{self.base_name}_{suffix}"
        if len(name) <= self.max_name_length:
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        keep_base = self.max_name_length - len(suffix) - len(digest) - 2
        if keep_base >= 8:
            return f"{self.base_name[:keep_base]}_{suffix}_{digest}"
        return f"{name[: self.max_name_length - len(digest) - 1]}_{digest}"

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
                if _errno(exc) in (_ER_BAD_DB, _ER_NO_SUCH_TABLE):
                    return None
                raise
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def list_databases(self, prefix: str) -> list[DatabaseInfo]:
        with self._admin() as cur:
            cur.execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s ESCAPE '!'",
                [_like_prefix(prefix)],
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
                if _errno(exc) not in (_ER_BAD_DB, _ER_NO_SUCH_TABLE):
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
            if _errno(exc) == _ER_DB_CREATE_EXISTS:
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
            if create or _errno(exc) != _ER_NO_SUCH_TABLE:
                raise
            MySQLEngine._write_mark(cur, name, mark, create=True)

    def seal(self, name: str, mark: str) -> None:
        # MariaDB has no read-only databases; the core never writes to a
        # sealed template and clones only read it.
        self.write_mark(name, mark)

    def clone(self, template: str, target: str, mark: str) -> None:
        self._copy_database(template, target, mark)

    def copy_from(self, source: dict[str, Any], target: str, mark: str) -> None:
        source_name = str(source["NAME"])
        same_server = str(source.get("HOST") or "") == str(
            self.settings.get("HOST") or ""
        ) and str(source.get("PORT") or "") == str(self.settings.get("PORT") or "")
        if same_server:
            self._copy_database(source_name, target, mark)
        else:
            self._dump_and_load(source, target, mark)

    # --- copying ---------------------------------------------------------------

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
                    schema = self._read_schema(cur, source)
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

    def _read_schema(self, cur: CursorWrapper, db: str) -> _Schema:
        cur.execute(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = %s",
            [db],
        )
        row = cur.fetchone()
        if row is None:
            raise EngineError(f"Database {db!r} does not exist.")
        charset, collation = row
        tables, views = self._tables(cur, db)
        for table in tables:
            cur.execute(f"SHOW CREATE TABLE {quote(db)}.{quote(table.name)}")
            table.create = cur.fetchone()[1]
        schema = _Schema(charset=charset, collation=collation, tables=tables)
        if views:
            # Definitions come back free of the database's name only while it
            # is the current one; otherwise a clone's views would read the
            # template. USE changes nothing in the database.
            cur.execute(f"USE {quote(db)}")
            for view in views:
                cur.execute(f"SHOW CREATE VIEW {quote(view)}")
                schema.views.append((view, tuple(cur.fetchone())))
        cur.execute(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
            "ORDER BY EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_TIMING, ACTION_ORDER",
            [db],
        )
        for (trigger,) in cur.fetchall():
            if not trigger.startswith(OWN_PREFIX):
                cur.execute(f"SHOW CREATE TRIGGER {quote(db)}.{quote(trigger)}")
                schema.triggers.append((trigger, tuple(cur.fetchone())))
        cur.execute(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
            [db],
        )
        for routine, kind in cur.fetchall():
            cur.execute(f"SHOW CREATE {kind} {quote(db)}.{quote(routine)}")
            schema.routines.append((routine, kind, tuple(cur.fetchone())))
        cur.execute(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
            [db],
        )
        for (event,) in cur.fetchall():
            cur.execute(f"SHOW CREATE EVENT {quote(db)}.{quote(event)}")
            schema.events.append((event, tuple(cur.fetchone())))
        return schema

    @staticmethod
    def _tables(cur: CursorWrapper, db: str) -> tuple[list[_Table], list[str]]:
        """The user's base tables (largest first) and views in ``db``."""
        cur.execute(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            [db],
        )
        tables: dict[str, _Table] = {}
        views: list[str] = []
        for name, kind, engine, size in cur.fetchall():
            if name.startswith(OWN_PREFIX):
                continue
            if kind == "VIEW":
                views.append(name)
            elif kind == "BASE TABLE":
                tables[name] = _Table(name, engine, int(size or 0), [])
            else:
                raise EngineError(
                    f"{db}.{name} is a {kind}, which testbed cannot copy."
                )
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, EXTRA FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION",
            [db],
        )
        for table, column, extra in cur.fetchall():
            # MariaDB says "VIRTUAL GENERATED"/"STORED GENERATED" (older:
            # "PERSISTENT"); MySQL's "DEFAULT_GENERATED" is a plain default.
            generated = any(
                word in (extra or "").upper()
                for word in ("VIRTUAL", "STORED GENERATED", "PERSISTENT")
            )
            if table in tables and not generated:
                tables[table].columns.append(column)
        return sorted(tables.values(), key=lambda t: (-t.size, t.name)), sorted(views)

    def _copy_tables(
        self,
        first: BaseDatabaseWrapper,
        source: str,
        target: str,
        tables: Sequence[_Table],
        workers: int,
        unique_checks: bool | None,
    ) -> None:
        """Create and fill every table, ``workers`` connections at a time."""
        todo: queue.SimpleQueue[_Table] = queue.SimpleQueue()
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
        self, cur: CursorWrapper, source: str, target: str, schema: _Schema
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
                    if _errno(exc) not in _ER_VIEW_DEPENDENCY:
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
            # Errors go to files: draining two pipes one after the other could
            # block a process on a full one.
            with (
                tempfile.TemporaryFile() as dump_err,
                tempfile.TemporaryFile() as load_err,
            ):
                with (
                    subprocess.Popen(
                        dump_cmd,
                        stdout=subprocess.PIPE,
                        stderr=dump_err,
                        env={**os.environ, **dump_env} if dump_env else None,
                    ) as dump,
                    subprocess.Popen(
                        load_args,
                        stdin=dump.stdout,
                        stdout=subprocess.DEVNULL,
                        stderr=load_err,
                        env={**os.environ, **load_env} if load_env else None,
                    ) as load,
                ):
                    assert dump.stdout is not None
                    # The loader must be the pipe's only reader, so the dumper
                    # gets SIGPIPE if the loader stops.
                    dump.stdout.close()
                dump_err.seek(0)
                load_err.seek(0)
                dump_message = dump_err.read().decode(errors="replace").strip()
                load_message = load_err.read().decode(errors="replace").strip()
            if dump.returncode or load.returncode:
                raise EngineError(
                    f"Cannot copy database {source_name!r} into {target!r}: "
                    f"mysqldump exited {dump.returncode} ({dump_message}), "
                    f"mysql exited {load.returncode} ({load_message})."
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
        conn = self._open(settings=source)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@character_set_database, @@collation_database")
                charset, collation = cur.fetchone()
        finally:
            conn.close()
        return str(charset), str(collation)

    # --- per-test restore ------------------------------------------------------

    def _signature(
        self, cur: CursorWrapper, db: str, parts: Sequence[str] = _ALL_PARTS
    ) -> dict[str, str]:
        """A digest of each of ``parts`` of ``db``'s schema, from information_schema."""
        selects = []
        for part in parts:
            if part == "INNODB":
                # A table's InnoDB id changes when it is truncated or rebuilt,
                # which no trigger sees.
                dictionary = "INNODB_SYS_TABLES" if self._mariadb else "INNODB_TABLES"
                selects.append(
                    "SELECT 'INNODB', MD5(GROUP_CONCAT(CONCAT(NAME, ':', TABLE_ID) "
                    "ORDER BY NAME SEPARATOR ',')) "
                    f"FROM information_schema.{dictionary} WHERE NAME LIKE %(innodb)s ESCAPE '!'"
                )
                continue
            schema_column, columns = _SIGNATURE_PARTS[part]
            # Converted, because MySQL 8 gives these columns differing
            # collations, which CONCAT_WS refuses to mix.
            row = (
                "CONCAT_WS(',', "
                + ", ".join(f"QUOTE(CONVERT({c} USING utf8mb4))" for c in columns)
                + ")"
            )
            selects.append(
                f"SELECT '{part}', MD5(GROUP_CONCAT({row} ORDER BY {row} SEPARATOR ';')) "
                f"FROM information_schema.{part} WHERE {schema_column} = %(db)s"
            )
        cur.execute(
            " UNION ALL ".join(f"({s})" for s in selects),
            {"db": db, "innodb": _like_prefix(_innodb_name(db) + "/")},
        )
        return {str(part): str(digest) for part, digest in cur.fetchall()}

    def _probe(self, cur: CursorWrapper, db: str) -> _Probe:
        """One round trip: the server's DDL counters, ``db``'s AUTO_INCREMENT
        counters and its change log."""
        status = (
            "information_schema.GLOBAL_STATUS"
            if self._mariadb
            else "performance_schema.global_status"
        )

        # One collation for every branch: MySQL refuses a UNION of columns
        # whose collations differ.
        def text(expression: str) -> str:
            return (
                f"CONVERT(CAST({expression} AS CHAR) USING utf8mb4) COLLATE utf8mb4_bin"
            )

        program = f"SUM(CASE WHEN {_PROGRAM_DDL} THEN VARIABLE_VALUE ELSE 0 END)"
        cur.execute(
            # The counters count statements of every session on the server, in
            # stored programs and prepared statements too; when they have not
            # moved, no DDL ran anywhere and the schema needs no reading.
            f"(SELECT 'c', {text(program)}, {text('SUM(VARIABLE_VALUE)')} "
            f"FROM {status} WHERE {_ANY_DDL}) "
            f"UNION ALL (SELECT 'a', {text('TABLE_NAME')}, {text('AUTO_INCREMENT')} "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE <> 'VIEW') "
            f"UNION ALL (SELECT 'd', tbl, pk FROM {quote(db)}.{quote(DIRTY_TABLE)})",
            [db],
        )
        probe = _Probe()
        for kind, key, value in cur.fetchall():
            if kind == "c":
                probe.program_ddl = None if key is None else int(key)
                probe.ddl = None if value is None else int(value)
            elif kind == "a":
                probe.counters[key] = None if value is None else int(value)
            else:
                probe.logged.append((key, value))
        return probe

    def prepare_tracking(self, name: str, template: str) -> bool:
        with self._admin() as cur:
            try:
                return self._prepare_tracking(cur, name, template)
            except DatabaseError as exc:
                if _errno(exc) in _ER_ACCESS_DENIED:
                    return False
                raise EngineError(
                    f"Cannot set up change tracking in {name!r}: {exc}"
                ) from exc

    def _prepare_tracking(self, cur: CursorWrapper, name: str, template: str) -> bool:
        tables, _ = self._tables(cur, name)
        cur.execute(
            "SELECT TABLE_NAME, AUTO_INCREMENT, TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE <> 'VIEW'",
            [template],
        )
        template_counters: dict[str, int | None] = {}
        template_rows: dict[str, int] = {}
        for table, counter, rows in cur.fetchall():
            template_counters[table] = None if counter is None else int(counter)
            template_rows[table] = int(rows or 0)
        # Single-column primary keys, the only keys rows are logged by. Two
        # queries: information_schema joins are slow (tens of ms).
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = %s AND INDEX_NAME = 'PRIMARY'",
            [name],
        )
        key_columns: dict[str, list[str]] = {}
        for table, column in cur.fetchall():
            key_columns.setdefault(table, []).append(column)
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s",
            [name],
        )
        keys: dict[str, tuple[str, bool]] = {}
        for table, column, data_type, length, charset in cur.fetchall():
            if key_columns.get(table) != [column]:
                continue
            data_type = str(data_type).lower()
            if data_type in _INT_TYPES:
                keys[table] = (column, True)
            elif (
                data_type in _TEXT_KEY_TYPES
                and (charset is None or charset in _TEXT_KEY_CHARSETS)
                and (data_type == "uuid" or (length is not None and int(length) <= 255))
            ):
                keys[table] = (column, False)
        cur.execute(
            "SELECT TABLE_NAME, REFERENCED_TABLE_NAME, UPDATE_RULE, DELETE_RULE "
            "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s "
            "AND UNIQUE_CONSTRAINT_SCHEMA = %s",
            [name, name],
        )
        cascades: dict[str, set[str]] = {}
        for child, parent, on_update, on_delete in cur.fetchall():
            if {on_update, on_delete} - {"RESTRICT", "NO ACTION"}:
                cascades.setdefault(parent, set()).add(child)
        cur.execute(
            "SELECT DISTINCT EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            [name],
        )
        user_triggered = {row[0] for row in cur.fetchall()}
        innodb = [t.name for t in tables if (t.engine or "").lower() == "innodb"]
        dictionary = "INNODB_SYS_TABLES" if self._mariadb else "INNODB_TABLES"
        cur.execute(
            f"SELECT NAME FROM information_schema.{dictionary} WHERE NAME LIKE %s ESCAPE '!'",
            [_like_prefix(_innodb_name(name) + "/")],
        )
        found = {row[0] for row in cur.fetchall()}
        if any(f"{_innodb_name(name)}/{_innodb_name(t)}" not in found for t in innodb):
            # Without every table's InnoDB id a TRUNCATE would go unseen.
            return False

        log = f"{quote(name)}.{quote(DIRTY_TABLE)}"
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {log} ("
            "tbl VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
            "pk VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
            "PRIMARY KEY (tbl, pk)) ENGINE=InnoDB"
        )
        tracked: dict[str, _TrackedTable] = {}
        for table in tables:
            pk, pk_is_int = keys.get(table.name, (None, False))
            tracked[table.name] = _TrackedTable(
                table.name,
                table.column_list,
                pk,
                pk_is_int,
                template_rows.get(table.name, 0),
            )
            self._create_triggers(cur, name, table.name, pk)
        signature = self._signature(cur, name)
        probe = self._probe(cur, name)
        state = _Tracking(
            template=template,
            signature=signature,
            ddl=probe.ddl,
            program_ddl=probe.program_ddl,
            tables=tracked,
            auto_increment={t.name: template_counters.get(t.name) for t in tables},
            cascades=cascades,
            always={t.name for t in tables if (t.engine or "").lower() != "innodb"},
            user_triggered=user_triggered,
        )
        with self._mutex:
            self._tracking[name] = state
        return True

    @staticmethod
    def _create_triggers(
        cur: CursorWrapper, db: str, table: str, pk: str | None
    ) -> None:
        stem = OWN_PREFIX + hashlib.sha256(table.encode()).hexdigest()[:16]
        literal = _utf8_literal(table)
        for event, suffix, rows in (
            ("INSERT", "i", ["NEW"]),
            ("UPDATE", "u", ["OLD", "NEW"]),
            ("DELETE", "d", ["OLD"]),
        ):
            if pk is None:
                values = f"({literal}, '')"
            else:
                # An UPDATE may change the key itself: log the old and new row.
                values = ", ".join(f"({literal}, {row}.{quote(pk)})" for row in rows)
            # INSERT IGNORE: a row changed twice is logged once, and the
            # non-strict sql_mode the trigger keeps means logging never fails
            # the test's own statement.
            cur.execute(
                f"CREATE TRIGGER {quote(db)}.{quote(f'{stem}_{suffix}')} AFTER {event} "
                f"ON {quote(db)}.{quote(table)} FOR EACH ROW "
                f"IF @testbed_quiet IS NULL THEN "
                f"INSERT IGNORE INTO {quote(DIRTY_TABLE)} (tbl, pk) VALUES {values}; END IF"
            )

    def _reset_tracked(self, name: str, template: str) -> bool:
        with self._mutex:
            state = self._tracking.get(name)
        if state is None or state.template != template:
            return False
        with self._admin() as cur:
            try:
                probe = self._probe(cur, name)
                if probe.ddl is None or probe.ddl != state.ddl:
                    parts = list(_TABLE_PARTS)
                    if (
                        probe.program_ddl is None
                        or probe.program_ddl != state.program_ddl
                    ):
                        parts += _PROGRAM_PARTS
                    signature = self._signature(cur, name, parts)
                    if any(signature.get(p) != state.signature[p] for p in parts):
                        return False
            except DatabaseError as exc:
                if _errno(exc) in (_ER_BAD_DB, _ER_NO_SUCH_TABLE):
                    return False
                raise EngineError(
                    f"Cannot read the change log of {name!r}: {exc}"
                ) from exc
            plan = self._plan_reset(state, probe.logged)
            if plan is None:
                return False
            whole, rows = plan
            stale = {
                t: v
                for t, v in state.auto_increment.items()
                if v is not None and probe.counters.get(t) != v
            }
            altered = 0
            try:
                if probe.logged or whole:
                    self._restore_rows(
                        cur, name, template, state, whole, rows, bool(probe.logged)
                    )
                for table, counter in sorted(stale.items()):
                    cur.execute(
                        f"ALTER TABLE {quote(name)}.{quote(table)} AUTO_INCREMENT = {int(counter)}"
                    )
                    altered += 1
            except DatabaseError as exc:
                raise EngineError(
                    f"Cannot restore {name!r} from template {template!r}: {exc}"
                ) from exc
            finally:
                # Only the engine's own ALTERs moved the counters since the
                # probe, unless the next probe finds otherwise.
                state.ddl = None if probe.ddl is None else probe.ddl + altered
                state.program_ddl = probe.program_ddl
        return True

    @staticmethod
    def _plan_reset(
        state: _Tracking, logged: Sequence[tuple[str, str]]
    ) -> tuple[set[str], dict[str, set[str]]] | None:
        """Tables to copy whole, and rows to copy by key; None if unsafe."""
        whole = set(state.always)
        rows: dict[str, set[str]] = {}
        for table, pk in logged:
            tracked = state.tables.get(table)
            if tracked is None:
                return None
            if tracked.pk is None:
                whole.add(table)
            else:
                rows.setdefault(table, set()).add(pk)
        for table, keys in rows.items():
            # Measured: by key costs about twice as much per row as copying
            # the whole table.
            if len(keys) > _ROW_BATCH and len(keys) * 2 > state.tables[table].rows:
                whole.add(table)
        todo = list(whole | rows.keys())
        while todo:
            for child in state.cascades.get(todo.pop(), ()):
                if child not in whole:
                    whole.add(child)
                    todo.append(child)
        for table in whole:
            rows.pop(table, None)
        if (whole | rows.keys()) & state.user_triggered:
            return None
        return whole, rows

    @staticmethod
    def _restore_rows(
        cur: CursorWrapper,
        name: str,
        template: str,
        state: _Tracking,
        whole: set[str],
        rows: dict[str, set[str]],
        clear_log: bool,
    ) -> None:
        cur.execute("START TRANSACTION")
        try:
            for table in sorted(whole):
                columns = state.tables[table].column_list
                target = f"{quote(name)}.{quote(table)}"
                cur.execute(f"DELETE FROM {target}")
                cur.execute(
                    f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {quote(template)}.{quote(table)}"
                )
            for table, keys in sorted(rows.items()):
                tracked = state.tables[table]
                assert tracked.pk is not None
                target = f"{quote(name)}.{quote(table)}"
                values: list[Any] = sorted(keys)
                if tracked.pk_is_int:
                    values = sorted(int(k) for k in keys)
                for start in range(0, len(values), _ROW_BATCH):
                    batch = values[start : start + _ROW_BATCH]
                    where = f"WHERE {quote(tracked.pk)} IN ({', '.join(['%s'] * len(batch))})"
                    cur.execute(f"DELETE FROM {target} {where}", batch)
                    cur.execute(
                        f"INSERT INTO {target} ({tracked.column_list}) SELECT {tracked.column_list} "
                        f"FROM {quote(template)}.{quote(table)} {where}",
                        batch,
                    )
            if clear_log:
                cur.execute(f"DELETE FROM {quote(name)}.{quote(DIRTY_TABLE)}")
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(DatabaseError):
                cur.execute("ROLLBACK")
            raise

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
                if _errno(exc) != _ER_LOCK_WAIT_TIMEOUT:
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
