"""Per-test restore: set tracking up in a clone, and reset it to its template.

See ``tracking_sql`` for what tracking adds to the clone; this module decides
whether a clone can be tracked at all, and runs the reset.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import DatabaseError

from testbed._engines._base import EngineError
from testbed._engines.postgresql.connection import (
    DEADLOCK_DETECTED,
    INSUFFICIENT_PRIVILEGE,
    LOCK_NOT_AVAILABLE,
    UNDEFINED_FUNCTION,
    PostgreSQLConnections,
    broken,
    sqlstate,
)
from testbed._engines.postgresql.tracking_sql import (
    SCHEMA,
    USER_SCHEMA,
    Table,
    tracking_sql,
)

# Written as the comment of the schema; a schema without it is not ours.
_TRACKING_MARK = "testbed tracking v1 of "


class PostgreSQLTracking(PostgreSQLConnections):
    """``prepare_tracking`` and ``_reset_tracked``."""

    # Restoring a table whole, TRUNCATE costs more than DELETE below about
    # this many rows (new files for the table and each index), measured with
    # benchmarks/pg_strategy.py; after a test's TRUNCATE, DELETE has next to
    # nothing to remove anyway.
    restore_truncate_rows: ClassVar[int] = 10_000

    def prepare_tracking(self, name: str, template: str) -> bool:
        conn = self._restorer(name)
        try:
            with conn.cursor() as cursor:
                return self._prepare(cursor, _TRACKING_MARK + template)
        except DatabaseError as exc:
            # A session holds a table, or the role may not read one: no
            # tracking, and nothing was made.
            if sqlstate(exc) == LOCK_NOT_AVAILABLE:
                return self._refuse(
                    f"another session holds a lock on one of its tables ({exc})"
                )
            if sqlstate(exc) == INSUFFICIENT_PRIVILEGE:
                return self._refuse(
                    f"the role may not read one of its tables ({exc}); grant it, "
                    "or run the tests as the tables' owner"
                )
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
            if comment == mark:
                return True
            return self._refuse(
                f"it has a schema named {SCHEMA!r} that testbed did not make; "
                "rename that schema"
            )
        tables = self._tables(cursor)
        if tables is None:
            return self._refuse(
                "it has partitioned or inherited tables, whose rows reach "
                "them by too many paths to follow"
            )
        # Without replica mode, the restore's own deletes and inserts fire
        # triggers and rules and meet foreign keys: only deferred NO ACTION
        # keys and no user triggers or rules leave the result exact.
        if not superuser and self._needs_replica(cursor):
            return self._refuse(
                "it has triggers, rules, cascading or non-deferrable foreign "
                "keys, materialized views or forced row security, which only "
                "a superuser's restores (in replica mode) get right; run the "
                "tests as a superuser role"
            )
        cursor.execute(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            f" WHERE c.relkind = 'S' AND {USER_SCHEMA} ORDER BY c.oid"
        )
        sequences = [(int(oid), str(qname)) for oid, qname in cursor.fetchall()]
        cursor.execute(
            tracking_sql(
                tables,
                sequences,
                mark,
                replica=bool(superuser),
                truncate_rows=self.restore_truncate_rows,
            )
        )
        return True

    def _refuse(self, why: str) -> bool:
        self.tracking_refused = why
        return False

    @staticmethod
    def _needs_replica(cursor: Any) -> bool:
        cursor.execute(
            f"""
            SELECT EXISTS (SELECT FROM pg_trigger t
                           JOIN pg_class c ON c.oid = t.tgrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE NOT t.tgisinternal AND {USER_SCHEMA})
                OR EXISTS (SELECT FROM pg_rewrite r
                           JOIN pg_class c ON c.oid = r.ev_class
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMA})
                OR EXISTS (SELECT FROM pg_constraint f
                           JOIN pg_class c ON c.oid = f.conrelid
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE f.contype = 'f' AND {USER_SCHEMA}
                             AND (NOT f.condeferrable OR f.confdeltype <> 'a'))
                -- Policies would filter the copies and restores; a REFRESH
                -- changes no catalog row the signature reads.
                OR EXISTS (SELECT FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                           WHERE {USER_SCHEMA}
                             AND (c.relkind = 'm' OR c.relforcerowsecurity))
            """
        )
        return bool(cursor.fetchone()[0])

    @staticmethod
    def _tables(cursor: Any) -> list[Table] | None:
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
            WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMA}
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
                Table(
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
                code = sqlstate(exc)
                if code in (
                    LOCK_NOT_AVAILABLE,
                    DEADLOCK_DETECTED,
                    UNDEFINED_FUNCTION,
                ):
                    # A leftover session holds a lock, or the tracking schema
                    # is gone: only a fresh clone is certain.
                    return False
                if attempt == 1 and broken(conn):
                    self._close_restorer(name)
                    continue
                raise EngineError(
                    f"Could not restore PostgreSQL database {name!r} to its template "
                    f"{template!r}: {exc}"
                ) from exc
        raise AssertionError("unreachable")
