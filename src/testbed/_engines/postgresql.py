"""PostgreSQL: templates are databases, cloned with ``CREATE DATABASE … TEMPLATE``.

Marks are database comments, read from ``pg_database`` over a connection to
the ``postgres`` maintenance database, so reading one never connects to the
database it belongs to. A sealed template refuses connections: cloning
fails after a 5-second wait while anyone is connected to the source, and a
refused connection fails at once instead.

Per-test restore (``prepare_tracking``) keeps a pristine copy of every table
in a ``_testbed`` schema of the clone: the template refuses connections, and
PostgreSQL has no cross-database queries. Statement triggers with transition
tables log the primary keys each statement touches, so a restore rewrites
only those rows, in one server-side function call. For a superuser, restores
run in replica mode (no trigger or foreign key check fires) and an event
trigger logs DDL; otherwise restores defer constraints and compare a catalog
signature, and decline databases with triggers, rules or cascading keys.
After DDL only a fresh clone is exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, ClassVar, TypeVar

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from testbed._engines._base import DatabaseInfo, Engine, EngineError

STRATEGIES = ("FILE_COPY", "WAL_LOG")
# Measured by benchmarks/pg_strategy.py: FILE_COPY is faster here for both
# data sets, most of all in the create-right-after-drop pattern the engine
# repeats.
DEFAULT_STRATEGY = "FILE_COPY"

SCHEMA = "_testbed"
# Written as the comment of the schema; a schema without it is not ours.
_TRACKING_MARK = "testbed tracking v1 of "

_DUPLICATE_DATABASE = "42P04"
_OBJECT_IN_USE = "55006"
_INSUFFICIENT_PRIVILEGE = "42501"
_LOCK_NOT_AVAILABLE = "55P03"
_DEADLOCK_DETECTED = "40P01"
_UNDEFINED_FUNCTION = "42883"

# Schemas whose tables and sequences are the user's data.
_USER_SCHEMA = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema', '_testbed') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)

# Without event triggers (they need a superuser), DDL shows as a change in
# the catalog rows describing the user's objects. Columns a TRUNCATE, VACUUM
# or ANALYZE rewrites (relfilenode, relpages, …) are left out of pg_class.
_SIGNATURE = f"""
WITH ns AS (SELECT n.oid FROM pg_namespace n WHERE {_USER_SCHEMA}),
rel AS (SELECT c.oid FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns))
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(',', n.oid, n.nspname, n.nspowner, n.nspacl), ';' ORDER BY n.oid)
   FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)),
  (SELECT string_agg(concat_ws(',', c.oid, c.relname, c.relnamespace, c.relkind, c.relowner,
          c.relacl, c.reloptions, c.relpersistence, c.relnatts, c.relchecks, c.relrowsecurity,
          c.relforcerowsecurity, c.relreplident, c.reltablespace, c.reloftype, c.relam),
          ';' ORDER BY c.oid)
   FROM pg_class c WHERE c.oid IN (SELECT oid FROM rel)),
  (SELECT string_agg(concat_ws(',', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod,
          a.attnotnull, a.atthasdef, a.attisdropped, a.attidentity, a.attgenerated,
          a.attcollation, a.attacl, a.attoptions, a.attstattarget, a.attstorage),
          ';' ORDER BY a.attrelid, a.attnum)
   FROM pg_attribute a WHERE a.attrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_constraint x WHERE x.connamespace IN (SELECT oid FROM ns)),
  (SELECT string_agg(x.xmin || ':' || x.indexrelid, ';' ORDER BY x.indexrelid)
   FROM pg_index x WHERE x.indrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_trigger x WHERE x.tgrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_rewrite x WHERE x.ev_class IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_attrdef x WHERE x.adrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.seqrelid, ';' ORDER BY x.seqrelid)
   FROM pg_sequence x WHERE x.seqrelid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_proc x WHERE x.pronamespace IN (SELECT oid FROM ns)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid)
   FROM pg_type x WHERE x.typnamespace IN (SELECT oid FROM ns)),
  (SELECT string_agg(x.xmin || ':' || x.objoid || ':' || x.objsubid, ';'
          ORDER BY x.objoid, x.objsubid)
   FROM pg_description x WHERE x.objoid IN (SELECT oid FROM rel)),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid) FROM pg_extension x),
  (SELECT string_agg(x.xmin || ':' || x.oid, ';' ORDER BY x.oid) FROM pg_policy x)
))
"""

_T = TypeVar("_T")


def _quote(name: str) -> str:
    # ops.quote_name() leaves embedded double quotes alone.
    return '"' + name.replace('"', '""') + '"'


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of a (wrapped) psycopg 2 or 3 error."""
    while exc is not None:
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if code:
            return str(code)
        exc = exc.__cause__
    return None


def _broken(wrapper: BaseDatabaseWrapper) -> bool:
    raw = wrapper.connection
    return raw is None or bool(raw.closed)


def _truncate_utf8(text: str, limit: int) -> str:
    return text.encode()[:limit].decode(errors="ignore")


def _tail(stream: IO[bytes], limit: int = 4000) -> str:
    stream.seek(0)
    text = stream.read().decode(errors="replace").strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _lock_id(key: str) -> int:
    digest = hashlib.sha256(f"testbed:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class _Table:
    oid: int
    qname: str
    # Quoted names: every column, those an INSERT may set, the primary key.
    columns: tuple[str, ...]
    insertable: tuple[str, ...]
    key: tuple[str, ...]
    always_identity: bool
    children: tuple[int, ...]

    @property
    def pristine(self) -> str:
        return f"{SCHEMA}.p{self.oid}"

    @property
    def keys(self) -> str:
        return f"{SCHEMA}.k{self.oid}"

    def insert_from_pristine(self, where: str = "") -> str:
        cols = ", ".join(self.insertable)
        override = " OVERRIDING SYSTEM VALUE" if self.always_identity else ""
        return f"INSERT INTO {self.qname} ({cols}){override} SELECT {cols} FROM {self.pristine}{where}"


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    max_name_length: ClassVar[int] = 63
    # How long a restore waits for a lock a leftover session holds before
    # giving up (the core then replaces the database).
    restore_lock_timeout: ClassVar[float] = 5.0
    # Restoring a table whole, TRUNCATE costs more than DELETE below about
    # this many rows (new files for the table and each index), measured with
    # benchmarks/pg_strategy.py; after a test's TRUNCATE, DELETE has next to
    # nothing to remove anyway.
    restore_truncate_rows: ClassVar[int] = 10_000

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
                    if attempt == 1 and _broken(conn):
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

    # --- naming -------------------------------------------------------------------

    def derive_name(self, suffix: str, *, persistent: bool) -> str:
        full = f"{self.base_name}_{suffix}"
        if len(full.encode()) <= self.max_name_length:
            return full
        # PostgreSQL would silently truncate the name, so two long names
        # could collide; a hash of the full name keeps them apart.
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        tail = f"_{suffix}_{digest}"
        room = self.max_name_length - len(tail.encode())
        if room < 8:
            return _truncate_utf8(full, self.max_name_length - 9) + f"_{digest}"
        return _truncate_utf8(self.base_name, room) + tail

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
        pattern = prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
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
            if _sqlstate(exc) == _DUPLICATE_DATABASE:
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
                self._query(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
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
            options.append(f"ENCODING {_string(str(test['CHARSET']))}")
        if test.get("TEMPLATE"):
            options.append(f"TEMPLATE {_quote(str(test['TEMPLATE']))}")
        sql = f"CREATE DATABASE {_quote(name)}"
        if options:
            sql += " WITH " + " ".join(options)
        self._create(name, sql, f"create PostgreSQL database {name!r}")
        self._mark_new(name, mark)

    def write_mark(self, name: str, mark: str) -> None:
        try:
            self._query(f"COMMENT ON DATABASE {_quote(name)} IS {_string(mark)}")
        except DatabaseError as exc:
            raise EngineError(
                f"Could not mark PostgreSQL database {name!r}: {exc}"
            ) from exc

    def seal(self, name: str, mark: str) -> None:
        self.write_mark(name, mark)
        try:
            self._query(
                f"ALTER DATABASE {_quote(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
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

    def strategy(self) -> str:
        """The ``CREATE DATABASE`` strategy: ``TESTBED['POSTGRESQL_STRATEGY']``,
        read on each use, or the measured default."""
        from django.conf import settings

        configured = getattr(settings, "TESTBED", None)
        value = (
            configured.get("POSTGRESQL_STRATEGY")
            if isinstance(configured, dict)
            else None
        )
        if value is None:
            return DEFAULT_STRATEGY
        if isinstance(value, str) and value.upper() in STRATEGIES:
            return value.upper()
        from testbed._config import ConfigurationError

        raise ConfigurationError(
            f"settings.TESTBED['POSTGRESQL_STRATEGY'] is {value!r}; use "
            f"{' or '.join(repr(s) for s in STRATEGIES)}, or leave it out for "
            f"{DEFAULT_STRATEGY!r}."
        )

    def _copy_sql(self, source: str, target: str) -> str:
        sql = f"CREATE DATABASE {_quote(target)} TEMPLATE {_quote(source)}"
        if self._version() >= 150000:
            sql += f" STRATEGY {self.strategy()}"
        return sql

    def clone(self, template: str, target: str, mark: str) -> None:
        sql = self._copy_sql(template, target)
        try:
            self._query(sql)
        except DatabaseError as exc:
            code = _sqlstate(exc)
            if code == _DUPLICATE_DATABASE:
                raise EngineError(
                    f"PostgreSQL database {target!r} already exists."
                ) from exc
            hint = ""
            if code == _OBJECT_IN_USE:
                hint = " Something is connected to the template, which only happens if it was not sealed."
            raise EngineError(
                f"Could not clone PostgreSQL template {template!r} into {target!r}: {exc}.{hint}"
            ) from exc
        self._mark_new(target, mark)

    # --- copying a database testbed does not own ------------------------------------------

    @contextlib.contextmanager
    def _source_connection(
        self, source: dict[str, Any]
    ) -> Iterator[BaseDatabaseWrapper]:
        from django.db.utils import load_backend

        settings = {**source, "OPTIONS": dict(source.get("OPTIONS") or {})}
        settings["OPTIONS"].pop("pool", None)
        settings["OPTIONS"].setdefault("application_name", "testbed")
        backend = load_backend(settings["ENGINE"])
        wrapper: BaseDatabaseWrapper = backend.DatabaseWrapper(
            settings, f"__testbed_{self.alias}"
        )
        self._open(str(settings["NAME"]), wrapper)
        try:
            yield wrapper
        finally:
            wrapper.close()

    def _inspect_source(
        self, source: dict[str, Any]
    ) -> tuple[bool, int, dict[str, str]]:
        """(same server as ours, other sessions on it, its encoding/locale)."""
        name = str(source["NAME"])
        with self._source_connection(source) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM pg_postmaster_start_time())::text,"
                " current_setting('port'),"
                " pg_backend_pid(),"
                " (SELECT count(*) FROM pg_stat_activity"
                "   WHERE datname = current_database() AND pid <> pg_backend_pid()"
                "   AND backend_type <> 'autovacuum worker'),"
                " pg_encoding_to_char(d.encoding), d.datcollate, d.datctype"
                " FROM pg_database d WHERE d.datname = current_database()"
            )
            started, port, pid, sessions, encoding, collate, ctype = cursor.fetchone()
        ours = self._query(
            "SELECT extract(epoch FROM pg_postmaster_start_time())::text, current_setting('port')"
        )[0]
        same = (started, port) == tuple(ours)
        if same:
            # Our own session ends asynchronously after close(); a TEMPLATE
            # copy started before it has gone would wait for it.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and self._query(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]
            ):
                time.sleep(0.005)
            # CREATE DATABASE stops autovacuum itself; anyone else would
            # make it wait 5 seconds and fail.
            sessions = self._query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type <> 'autovacuum worker'",
                [name],
            )[0][0]
        locale = {"ENCODING": encoding, "LC_COLLATE": collate, "LC_CTYPE": ctype}
        return same, int(sessions), locale

    def copy_from(self, source: dict[str, Any], target: str, mark: str) -> None:
        name = str(source["NAME"])
        same_server, sessions, locale = self._inspect_source(source)
        if same_server and not sessions:
            try:
                self._query(self._copy_sql(name, target))
            except DatabaseError as exc:
                code = _sqlstate(exc)
                if code == _DUPLICATE_DATABASE:
                    raise EngineError(
                        f"PostgreSQL database {target!r} already exists."
                    ) from exc
                # Someone connected meanwhile, or only the owner may copy it.
                if code not in (_OBJECT_IN_USE, _INSUFFICIENT_PRIVILEGE):
                    raise EngineError(
                        f"Could not copy PostgreSQL database {name!r} into {target!r}: {exc}"
                    ) from exc
            else:
                self._mark_new(target, mark)
                return
        self._create_for_restore(target, locale)
        try:
            self._dump_restore(source, target)
        except BaseException:
            with contextlib.suppress(DatabaseError):
                self._query(f"DROP DATABASE IF EXISTS {_quote(target)} WITH (FORCE)")
            raise
        self._mark_new(target, mark)

    def _create_for_restore(self, target: str, locale: dict[str, str]) -> None:
        # template0, as pg_dump's documentation asks: objects someone added
        # to template1 would clash with the dump's.
        base = f"CREATE DATABASE {_quote(target)} TEMPLATE template0"
        options = " ".join(f"{key} {_string(value)}" for key, value in locale.items())
        try:
            self._query(f"{base} {options}")
        except DatabaseError as exc:
            if _sqlstate(exc) == _DUPLICATE_DATABASE:
                raise EngineError(
                    f"PostgreSQL database {target!r} already exists."
                ) from exc
            # The source's locale may not exist on this server.
            encoding = _string(locale["ENCODING"])
            self._create(
                target,
                f"{base} ENCODING {encoding}",
                f"create PostgreSQL database {target!r}",
            )

    def _dump_restore(self, source: dict[str, Any], target: str) -> None:
        from testbed._engines import backend_of

        name = str(source["NAME"])
        pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
        if not pg_dump or not psql:
            raise EngineError(
                f"Copying PostgreSQL database {name!r} needs pg_dump and psql on PATH "
                "(Debian/Ubuntu: apt install postgresql-client)."
            )

        def command(
            settings: dict[str, Any], program: str, args: list[str]
        ) -> tuple[list[str], dict[str, str]]:
            client = backend_of(settings).DatabaseWrapper.client_class
            argv, env = client.settings_to_cmd_args_env(settings, args)
            return [program, *argv[1:]], {**os.environ, **(env or {})}

        dump_argv, dump_env = command(
            source,
            pg_dump,
            ["--no-password", "--no-owner", "--no-privileges", "--format=plain"],
        )
        restore_argv, restore_env = command(
            self.settings_for(target),
            psql,
            [
                "--no-password",
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                "--single-transaction",
            ],
        )
        with (
            tempfile.TemporaryFile() as dump_err,
            tempfile.TemporaryFile() as restore_err,
        ):
            dump = subprocess.Popen(
                dump_argv, stdout=subprocess.PIPE, stderr=dump_err, env=dump_env
            )
            assert dump.stdout is not None
            try:
                restore = subprocess.Popen(
                    restore_argv,
                    stdin=dump.stdout,
                    stdout=subprocess.DEVNULL,
                    stderr=restore_err,
                    env=restore_env,
                )
            finally:
                # psql holds its own copy; pg_dump must see EPIPE if psql dies.
                dump.stdout.close()
            restore_code = restore.wait()
            dump_code = dump.wait()
            if dump_code:
                raise EngineError(
                    f"pg_dump of PostgreSQL database {name!r} failed (exit {dump_code}): "
                    f"{_tail(dump_err)}"
                )
            if restore_code:
                raise EngineError(
                    f"Restoring a dump of PostgreSQL database {name!r} into {target!r} failed "
                    f"(psql exit {restore_code}): {_tail(restore_err)}"
                )

    # --- destroying --------------------------------------------------------------------------

    def _drop(self, name: str) -> None:
        self._close_restorer(name)
        quoted = _quote(name)
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
                if acquired and not _broken(conn):
                    with contextlib.suppress(DatabaseError), conn.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
            finally:
                conn.close()

    # --- per-test restore ---------------------------------------------------------------------

    def _restorer(self, name: str) -> BaseDatabaseWrapper:
        conn = self._restorers.get(name)
        if conn is not None and not _broken(conn):
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

    def prepare_tracking(self, name: str, template: str) -> bool:
        conn = self._restorer(name)
        try:
            with conn.cursor() as cursor:
                return self._prepare(cursor, _TRACKING_MARK + template)
        except DatabaseError as exc:
            # A session holds a table, or the role may not read one: no
            # tracking, and nothing was made.
            if _sqlstate(exc) in (_LOCK_NOT_AVAILABLE, _INSUFFICIENT_PRIVILEGE):
                return False
            raise EngineError(
                f"Could not prepare PostgreSQL database {name!r} for restores: {exc}"
            ) from exc

    def _prepare(self, cursor: Any, mark: str) -> bool:
        cursor.execute(
            "SELECT current_setting('is_superuser') = 'on',"
            " EXISTS (SELECT FROM pg_namespace WHERE nspname = %s),"
            " (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace"
            "  WHERE nspname = %s)",
            [SCHEMA, SCHEMA],
        )
        superuser, prepared, comment = cursor.fetchone()
        if prepared:
            # Already tracking (this method ran before); a schema of that
            # name that is not ours is left alone.
            return bool(comment == mark)
        tables = self._tables(cursor)
        if tables is None:
            return False
        # Without replica mode, the restore's own deletes and inserts fire
        # triggers and rules and meet foreign keys: only deferred NO ACTION
        # keys and no user triggers or rules leave the result exact.
        if not superuser and self._needs_replica(cursor):
            return False
        cursor.execute(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind = 'S' AND {_USER_SCHEMA} ORDER BY c.oid"
        )
        sequences = [(int(oid), str(qname)) for oid, qname in cursor.fetchall()]
        cursor.execute(
            _tracking_sql(
                tables,
                sequences,
                mark,
                replica=bool(superuser),
                truncate_rows=self.restore_truncate_rows,
            )
        )
        return True

    @staticmethod
    def _needs_replica(cursor: Any) -> bool:
        cursor.execute(
            f"""
            SELECT EXISTS (SELECT FROM pg_trigger t
                           JOIN pg_class c ON c.oid = t.tgrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE NOT t.tgisinternal AND {_USER_SCHEMA})
                OR EXISTS (SELECT FROM pg_rewrite r
                           JOIN pg_class c ON c.oid = r.ev_class
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMA})
                OR EXISTS (SELECT FROM pg_constraint f
                           JOIN pg_class c ON c.oid = f.conrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE f.contype = 'f' AND {_USER_SCHEMA}
                             AND (NOT f.condeferrable OR f.confdeltype <> 'a'))
                -- Policies would filter the copies and restores; a REFRESH
                -- changes no catalog row the signature reads.
                OR EXISTS (SELECT FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE {_USER_SCHEMA}
                             AND (c.relkind = 'm' OR c.relforcerowsecurity))
            """
        )
        return bool(cursor.fetchone()[0])

    @staticmethod
    def _tables(cursor: Any) -> list[_Table] | None:
        """The user's tables, or None if some cannot be tracked."""
        cursor.execute(
            f"""
            SELECT c.oid, format('%I.%I', n.nspname, c.relname),
                   c.relkind = 'p' OR c.relispartition
                     OR EXISTS (SELECT FROM pg_inherits i
                                WHERE i.inhrelid = c.oid OR i.inhparent = c.oid),
                   ARRAY(SELECT format('%I', a.attname) FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                         ORDER BY a.attnum),
                   ARRAY(SELECT format('%I', a.attname) FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attgenerated = '' ORDER BY a.attnum),
                   ARRAY(SELECT format('%I', a.attname)
                         FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, pos),
                              pg_attribute a
                         WHERE i.indrelid = c.oid AND i.indisprimary
                           AND a.attrelid = c.oid AND a.attnum = k.attnum
                         ORDER BY k.pos),
                   EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid
                           AND a.attidentity = 'a' AND NOT a.attisdropped),
                   ARRAY(SELECT DISTINCT f.conrelid FROM pg_constraint f
                         WHERE f.contype = 'f' AND f.confrelid = c.oid)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p') AND {_USER_SCHEMA}
            ORDER BY c.oid
            """
        )
        tables = []
        for (
            oid,
            qname,
            inherits,
            columns,
            insertable,
            key,
            always,
            children,
        ) in cursor.fetchall():
            # Rows reach an inheritance tree through its parent's triggers and
            # its children's alike; too many paths to follow.
            if inherits:
                return None
            tables.append(
                _Table(
                    int(oid),
                    str(qname),
                    tuple(columns),
                    tuple(insertable),
                    tuple(key),
                    bool(always),
                    tuple(int(child) for child in children),
                )
            )
        return tables

    def _reset_tracked(self, name: str, template: str) -> bool:
        for attempt in (1, 2):
            conn = self._restorer(name)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(f"SELECT {SCHEMA}.reset()")
                    return bool(cursor.fetchone()[0])
            except DatabaseError as exc:
                code = _sqlstate(exc)
                if code in (
                    _LOCK_NOT_AVAILABLE,
                    _DEADLOCK_DETECTED,
                    _UNDEFINED_FUNCTION,
                ):
                    # A leftover session holds a lock, or the tracking schema
                    # is gone: only a fresh clone is certain.
                    return False
                if attempt == 1 and _broken(conn):
                    self._close_restorer(name)
                    continue
                raise EngineError(
                    f"Could not restore PostgreSQL database {name!r} to its template "
                    f"{template!r}: {exc}"
                ) from exc
        raise AssertionError("unreachable")


def _tracking_sql(
    tables: list[_Table],
    sequences: list[tuple[int, str]],
    mark: str,
    *,
    replica: bool,
    truncate_rows: int,
) -> str:
    """One DO block that sets up tracking in the current database.

    ``replica``: restores run in replica mode and an event trigger logs DDL,
    both of which need a superuser; otherwise restores defer constraints and
    compare a catalog signature.
    """
    s = SCHEMA
    out = [
        f"CREATE SCHEMA {s};",
        f"COMMENT ON SCHEMA {s} IS {_string(mark)};",
        f"CREATE TABLE {s}.ddl (tag text NOT NULL);",
        # Tables to restore whole: truncated ones, and those without a key.
        f"CREATE TABLE {s}.dirty (relid oid NOT NULL);",
        f"CREATE TABLE {s}.tables (relid oid PRIMARY KEY, qname text NOT NULL,"
        " children oid[] NOT NULL, big boolean NOT NULL, restore text NOT NULL, clear text);",
        f"CREATE FUNCTION {s}.dirty() RETURNS trigger LANGUAGE plpgsql AS $fn$"
        f" BEGIN INSERT INTO {s}.dirty VALUES (TG_RELID); RETURN NULL; END $fn$;",
    ]
    restore_keyed = []
    for t in tables:
        cols = ", ".join(t.columns)
        out.append(f"CREATE TABLE {t.pristine} AS SELECT {cols} FROM {t.qname};")
        clear = None
        if t.key:
            key = ", ".join(t.key)
            out += [
                f"CREATE UNIQUE INDEX ON {t.pristine} ({key});",
                f"CREATE TABLE {t.keys} AS SELECT {key} FROM {t.qname} WITH NO DATA;",
                f"CREATE FUNCTION {s}.log{t.oid}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN"
                f" IF TG_OP = 'INSERT' THEN INSERT INTO {t.keys} SELECT {key} FROM {s}_new;"
                f" ELSIF TG_OP = 'DELETE' THEN INSERT INTO {t.keys} SELECT {key} FROM {s}_old;"
                f" ELSE INSERT INTO {t.keys} SELECT {key} FROM {s}_old"
                f" UNION ALL SELECT {key} FROM {s}_new; END IF;"
                " RETURN NULL; END $fn$;",
            ]
            for event, transition in (
                ("INSERT", f"NEW TABLE AS {s}_new"),
                ("UPDATE", f"OLD TABLE AS {s}_old NEW TABLE AS {s}_new"),
                ("DELETE", f"OLD TABLE AS {s}_old"),
            ):
                out.append(
                    f"CREATE TRIGGER {s}_{event.lower()} AFTER {event} ON {t.qname}"
                    f" REFERENCING {transition} FOR EACH STATEMENT"
                    f" EXECUTE FUNCTION {s}.log{t.oid}();"
                )
            out.append(
                f"CREATE TRIGGER {s}_truncate AFTER TRUNCATE ON {t.qname}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {s}.dirty();"
            )
            clear = f"DELETE FROM {t.keys}"
            keyed = f" WHERE ({key}) IN (SELECT {key} FROM {t.keys})"
            restore_keyed.append(
                f" IF EXISTS (SELECT FROM {t.keys}) THEN"
                f" DELETE FROM {t.qname}{keyed};"
                f" {t.insert_from_pristine(keyed)};"
                f" DELETE FROM {t.keys}; END IF;"
            )
        else:
            out.append(
                f"CREATE TRIGGER {s}_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
                f" ON {t.qname} FOR EACH STATEMENT EXECUTE FUNCTION {s}.dirty();"
            )
        children = "{" + ",".join(str(c) for c in t.children) + "}"
        out.append(
            f"INSERT INTO {s}.tables VALUES ({t.oid}, {_string(t.qname)}, '{children}',"
            f" (SELECT count(*) >= {truncate_rows} FROM {t.pristine}),"
            f" {_string(t.insert_from_pristine())}, {_string(clear) if clear else 'NULL'});"
        )
    restore_sequences = ""
    if sequences:
        current = " UNION ALL ".join(
            f"SELECT {oid}::oid::regclass, last_value, is_called FROM {qname}"
            for oid, qname in sequences
        )
        out.append(
            f"CREATE TABLE {s}.sequences AS SELECT * FROM ({current}) AS v(seq, last_value, is_called);"
        )
        restore_sequences = (
            f" PERFORM setval(p.seq, p.last_value, p.is_called)"
            f" FROM ({current}) AS c(seq, last_value, is_called)"
            f" JOIN {s}.sequences p ON p.seq = c.seq"
            " WHERE (c.last_value, c.is_called) IS DISTINCT FROM (p.last_value, p.is_called);"
        )
    if replica:
        checks = f"""  IF EXISTS (SELECT FROM {s}.ddl) THEN RETURN false; END IF;
  IF current_setting('session_replication_role') <> 'replica' THEN
    RAISE EXCEPTION 'testbed restores of this database need a superuser';
  END IF;"""
    else:
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: checked at
        # commit, when every row is back.
        checks = f"""  IF (SELECT signature FROM {s}.signed) <> {s}.signature() THEN RETURN false; END IF;
  SET CONSTRAINTS ALL DEFERRED;"""
    # Whole-table restores: TRUNCATE the big ones whose referencing tables
    # are all truncated too (TRUNCATE refuses otherwise), DELETE the others.
    out.append(
        f"""CREATE FUNCTION {s}.reset() RETURNS boolean LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  tb_whole oid[];
  tb_truncated oid[];
  tb_blocked oid[];
  tb_table record;
BEGIN
{checks}
  tb_whole := ARRAY(SELECT DISTINCT relid FROM {s}.dirty);
  IF cardinality(tb_whole) > 0 THEN
    tb_truncated := ARRAY(SELECT relid FROM {s}.tables WHERE relid = ANY (tb_whole) AND big);
    LOOP
      tb_blocked := ARRAY(SELECT relid FROM {s}.tables
                       WHERE relid = ANY (tb_truncated) AND NOT children <@ tb_truncated);
      EXIT WHEN cardinality(tb_blocked) = 0;
      tb_truncated := ARRAY(SELECT unnest(tb_truncated) EXCEPT SELECT unnest(tb_blocked));
    END LOOP;
    IF cardinality(tb_truncated) > 0 THEN
      EXECUTE 'TRUNCATE ' || (SELECT string_agg(qname, ', ') FROM {s}.tables
                              WHERE relid = ANY (tb_truncated));
    END IF;
    FOR tb_table IN SELECT * FROM {s}.tables WHERE relid = ANY (tb_whole) LOOP
      IF NOT tb_table.relid = ANY (tb_truncated) THEN EXECUTE 'DELETE FROM ' || tb_table.qname; END IF;
      EXECUTE tb_table.restore;
      IF tb_table.clear IS NOT NULL THEN EXECUTE tb_table.clear; END IF;
    END LOOP;
    DELETE FROM {s}.dirty;
  END IF;
{chr(10).join(restore_keyed)}
{restore_sequences}
  RETURN true;
END $fn$;"""
    )
    if replica:
        # DDL makes the pristine copies wrong; temporary objects vanish with
        # their session and change nothing.
        out += [
            f"""CREATE FUNCTION {s}.log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF tg_tag LIKE 'DROP %' AND tg_tag <> 'DROP OWNED' THEN RETURN; END IF;
  IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands()
             WHERE schema_name IS NULL OR schema_name NOT LIKE 'pg\\_temp%')
     OR NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands()) THEN
    INSERT INTO {s}.ddl VALUES (tg_tag);
  END IF;
END $fn$;""",
            f"""CREATE FUNCTION {s}.log_drop() RETURNS event_trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF EXISTS (SELECT FROM pg_event_trigger_dropped_objects() WHERE NOT is_temporary) THEN
    INSERT INTO {s}.ddl VALUES (tg_tag);
  END IF;
END $fn$;""",
            f"CREATE EVENT TRIGGER {s}_ddl ON ddl_command_end EXECUTE FUNCTION {s}.log_ddl();",
            f"CREATE EVENT TRIGGER {s}_drop ON sql_drop EXECUTE FUNCTION {s}.log_drop();",
        ]
    else:
        # Last, so that it covers the triggers made above.
        out += [
            f"CREATE FUNCTION {s}.signature() RETURNS text LANGUAGE sql STABLE"
            f" AS $fn$ {_SIGNATURE} $fn$;",
            f"CREATE TABLE {s}.signed AS SELECT {s}.signature() AS signature;",
        ]
    body = "\n".join(out)
    return f"DO $testbed$\nBEGIN\n{body}\nEND\n$testbed$"


def _string(value: str) -> str:
    """A SQL string literal, whatever standard_conforming_strings says."""
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
