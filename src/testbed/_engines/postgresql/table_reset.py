"""PostgreSQL's table operations on a live test database (see
``testbed._engines._table_reset``).

They run on a session of testbed's own, kept open from one test to the
next: Django opens a new one for each transactional test, and a new
session reads the catalog cold, which costs more than the reset itself. It
sees what the test committed, which is all a flush leaves to remove once
Django closes the test's connection.

A superuser empties and restores tables in replica mode: no trigger fires,
the user's or the foreign keys', so the rows come and go exactly as asked.
Other roles get Django's own ``TRUNCATE ... CASCADE``, and restores with
the foreign keys deferred, as Django's flush and deserialization run.

Signatures are ``(count(*), sum(xmin))``: any row a later transaction
writes has a larger ``xmin``, so the pair changes whenever rows do, at the
cost of one scan. They are not content: equal rows written again differ.

The baseline of the migrated state is a copy of each table that holds rows,
in the ``_testbed_m`` schema of the schema template, made when the template
is built (``keep_baseline``), so every test database cloned from it carries
one: PostgreSQL cannot read another database's tables. Django's
introspection lists only the tables on the search path, so the project
never sees it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Hashable, Iterable, Iterator
from typing import Any, ClassVar

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper

from testbed._engines._base import private_connection
from testbed._engines._table_reset import TableReset
from testbed._engines.postgresql.connection import string

BASELINE_SCHEMA = "_testbed_m"
BASELINE_MARK = "testbed baseline v1"


def keep_baseline_sql() -> str:
    """SQL that copies every non-empty table on the search path into
    ``_testbed_m``: run in a schema template before it is sealed."""
    return f"""DO $testbed$
DECLARE
  tb_table record;
  tb_rows boolean;
BEGIN
  CREATE SCHEMA {BASELINE_SCHEMA};
  COMMENT ON SCHEMA {BASELINE_SCHEMA} IS '{BASELINE_MARK}';
  FOR tb_table IN
    SELECT c.oid::regclass AS qname, c.relname FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND pg_table_is_visible(c.oid)
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  LOOP
    EXECUTE format('SELECT EXISTS (SELECT FROM %s)', tb_table.qname) INTO tb_rows;
    IF tb_rows THEN
      EXECUTE format('CREATE TABLE {BASELINE_SCHEMA}.%I AS SELECT * FROM %s',
                     tb_table.relname, tb_table.qname);
    END IF;
  END LOOP;
END
$testbed$"""


class PostgreSQLTableReset(TableReset):
    vendor = "postgresql"
    flush_cascades: ClassVar[bool] = True
    content_signatures: ClassVar[bool] = False
    # How long a statement waits for a lock a leftover session holds (a
    # test that left a transaction open) before the reset gives up and
    # Django's flush runs instead.
    lock_timeout_ms: ClassVar[int] = 5000

    def _session(self) -> BaseDatabaseWrapper:
        session: BaseDatabaseWrapper | None = self.memo.get("session")
        if session is not None and session.is_usable():
            return session
        self.close()
        settings = {
            **self.connection.settings_dict,
            "OPTIONS": dict(self.connection.settings_dict.get("OPTIONS") or {}),
        }
        # A pooled connection would outlive close(), and pools are keyed by
        # alias, shared with the test's own connections.
        settings["OPTIONS"].pop("pool", None)
        settings["OPTIONS"].setdefault("application_name", "testbed")
        session = private_connection(settings, self.connection.alias)
        session.inc_thread_sharing()
        session.ensure_connection()
        with session.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('is_superuser') = 'on',"
                " set_config('synchronous_commit', 'off', false),"
                " set_config('lock_timeout', %s, false)",
                [f"{self.lock_timeout_ms}ms"],
            )
            superuser = bool(cursor.fetchone()[0])
            if superuser:
                cursor.execute("SET session_replication_role = replica")
        self.memo["session"] = session
        self.memo["superuser"] = superuser
        return session

    def close(self) -> None:
        session = self.memo.pop("session", None)
        if session is not None:
            with contextlib.suppress(DatabaseError):
                session.close()

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        # Straight on the driver's connection: Django's cursor wrapper costs
        # as much as these catalog-sized queries themselves.
        session = self._session()
        with session.wrap_database_errors:
            return list(session.connection.execute(sql, params).fetchall())

    def nonempty(self, tables: Iterable[str]) -> set[str]:
        names = sorted(set(tables))
        if not names:
            return set()
        sql = " UNION ALL ".join(
            f"SELECT {string(t)} WHERE EXISTS (SELECT 1 FROM {self.quote(t)})"
            for t in names
        )
        return {str(row[0]) for row in self._rows(sql)}

    def existing_tables(self) -> set[str]:
        with self._session().cursor() as cursor:
            return set(self.connection.introspection.table_names(cursor))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor in a transaction of the session: no trigger fires for a
        superuser (replica mode); other roles defer the foreign keys."""
        with self._session().cursor() as cursor:
            cursor.execute("BEGIN")
            try:
                if not self.memo["superuser"]:
                    cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    def referencing(self, tables: Collection[str]) -> set[str]:
        if not tables:
            return set()
        rows = self._rows(
            """
            WITH RECURSIVE refs(oid) AS (
              SELECT c.oid FROM pg_class c
              WHERE c.oid = ANY (%s::regclass[])
              UNION
              SELECT f.conrelid FROM pg_constraint f JOIN refs ON f.confrelid = refs.oid
              WHERE f.contype = 'f'
            )
            SELECT c.relname FROM refs JOIN pg_class c ON c.oid = refs.oid
            WHERE pg_table_is_visible(c.oid)
            """,
            [[self.quote(t) for t in tables]],
        )
        return set(tables) | {str(row[0]) for row in rows}

    def signatures(self, tables: Iterable[str]) -> dict[str, Hashable]:
        names = sorted(set(tables))
        if not names:
            return {}
        sql = " UNION ALL ".join(
            f"SELECT {string(t)}, count(*), coalesce(sum(xmin::text::bigint), 0)"
            f" FROM {self.quote(t)}"
            for t in names
        )
        return {str(n): (int(c), int(s)) for n, c, s in self._rows(sql)}

    def empty(self, tables: Collection[str]) -> None:
        if not tables:
            return
        self._session()
        with self._transaction() as cursor:
            if self.memo["superuser"]:
                # DELETE costs a fraction of TRUNCATE's new files for the few
                # rows a test leaves; in replica mode nothing else fires.
                for table in sorted(tables):
                    cursor.execute(f"DELETE FROM {self.quote(table)}")
                return
            # Django's own flush statement; CASCADE reaches only tables that
            # Django's flush empties too, or its TRUNCATE would have failed.
            from django.core.management.color import no_style

            for sql in self.connection.ops.sql_flush(
                no_style(), sorted(tables), reset_sequences=False, allow_cascade=True
            ):
                cursor.execute(sql)

    # --- the migrated state ------------------------------------------------------

    def baseline_tables(self, source: str) -> set[str] | None:
        rows = self._rows(
            "SELECT c.relname FROM pg_namespace n"
            " LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind = 'r'"
            " WHERE n.nspname = %s AND obj_description(n.oid, 'pg_namespace') = %s",
            [BASELINE_SCHEMA, BASELINE_MARK],
        )
        if not rows:
            return None
        return {str(row[0]) for row in rows if row[0] is not None}

    def restore_baseline(
        self, source: str, tables: Collection[str], *, exact: bool = False
    ) -> None:
        if not tables:
            return
        self._session()
        with self._transaction() as cursor:
            for table in sorted(tables):
                for sql in self._restore_sql(cursor, table, exact=exact):
                    cursor.execute(sql)

    def _restore_sql(self, cursor: Any, table: str, *, exact: bool) -> list[str]:
        cursor.execute(
            """
            SELECT ARRAY(SELECT quote_ident(a.attname) FROM pg_attribute a
                         WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attgenerated = ''
                           AND a.attname IN (SELECT b.attname FROM pg_attribute b
                                             WHERE b.attrelid = m.oid AND b.attnum > 0
                                               AND NOT b.attisdropped)
                         ORDER BY a.attnum),
                   ARRAY(SELECT quote_ident(a.attname)
                         FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, pos),
                              pg_attribute a
                         WHERE i.indrelid = t.oid AND i.indisprimary
                           AND a.attrelid = t.oid AND a.attnum = k.attnum
                         ORDER BY k.pos),
                   EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = t.oid
                           AND a.attidentity = 'a' AND NOT a.attisdropped)
            FROM (SELECT %s::regclass AS oid) t,
                 (SELECT format('%%I.%%I', %s::text, %s::text)::regclass AS oid) m
            """,
            [self.quote(table), BASELINE_SCHEMA, table],
        )
        columns, key, always = cursor.fetchone()
        cols = ", ".join(columns)
        override = " OVERRIDING SYSTEM VALUE" if always else ""
        target = self.quote(table)
        source = f"{BASELINE_SCHEMA}.{target}"
        if exact:
            # Rows compared whole, as text: it works for every column type
            # (json has no equality operator), and the copy has the table's
            # columns in its order. Rows equal to the baseline's stay.
            return [
                f"DELETE FROM {target} AS t WHERE NOT EXISTS"
                f" (SELECT FROM {source} AS b WHERE b::text = t::text)",
                f"INSERT INTO {target} ({cols}){override} SELECT {cols} FROM {source} AS b"
                f" WHERE NOT EXISTS (SELECT FROM {target} AS t WHERE t::text = b::text)",
            ]
        sql = f"INSERT INTO {target} ({cols}){override} SELECT {cols} FROM {source}"
        if not key:
            return [sql]
        rest = [c for c in columns if c not in key]
        if not rest:
            return [f"{sql} ON CONFLICT ({', '.join(key)}) DO NOTHING"]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in rest)
        return [f"{sql} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"]
