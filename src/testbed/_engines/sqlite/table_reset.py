"""SQLite's table operations on a live test database (see
``testbed._engines._table_reset``).

Emptying tables is Django's own flush statement for them (``DELETE
FROM``). Signatures digest each table's rows: SQLite keeps no row versions,
and a scan in the process costs no round trip. The baseline of the migrated
state is the schema template's file, attached read-only for the restore.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Collection, Hashable, Iterable, Iterator
from typing import Any, ClassVar

from django.db import transaction

from testbed._engines._table_reset import TableReset

_ATTACHED = "testbed_baseline"


class SQLiteTableReset(TableReset):
    vendor = "sqlite"
    flush_cascades: ClassVar[bool] = True

    def _foreign_keys(self) -> Iterable[tuple[str, str]]:
        rows = self._rows(
            'SELECT m.name, f."table" FROM sqlite_master m,'
            " pragma_foreign_key_list(m.name) f WHERE m.type = 'table'"
        )
        return [(str(child), str(parent)) for child, parent in rows]

    def signatures(self, tables: Iterable[str]) -> dict[str, Hashable]:
        found: dict[str, Hashable] = {}
        with self.connection.cursor() as cursor:
            for table in sorted(set(tables)):
                quoted = self.quote(table)
                cursor.execute(f"PRAGMA main.table_xinfo({quoted})")
                columns = [self.quote(row[1]) for row in cursor.fetchall()]
                # Rows joined into one string in SQLite itself: fetching them
                # as Python tuples costs ten times as much.
                row = " || ',' || ".join(f"quote({c})" for c in columns) or "''"
                cursor.execute(
                    f"SELECT count(*), group_concat(r, char(10)) FROM"
                    f" (SELECT {row} AS r FROM main.{quoted} ORDER BY 1)"
                )
                count, text = cursor.fetchone()
                found[table] = (
                    int(count),
                    hashlib.sha256((text or "").encode()).hexdigest(),
                )
        return found

    # --- the migrated state ------------------------------------------------------

    @contextlib.contextmanager
    def _attached(self, source: str) -> Iterator[Any]:
        self.connection.ensure_connection()
        raw = self.connection.connection
        uri = "file:" + source.replace("?", "%3f").replace("#", "%23") + "?mode=ro"
        raw.execute(f"ATTACH DATABASE ? AS {_ATTACHED}", [uri])
        try:
            yield raw
        finally:
            raw.execute(f"DETACH DATABASE {_ATTACHED}")

    def baseline_tables(self, source: str) -> set[str] | None:
        if not os.path.isfile(source):
            return None
        with self._attached(source) as raw:
            names = [
                str(row[0])
                for row in raw.execute(
                    f"SELECT name FROM {_ATTACHED}.sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
                )
            ]
            return {
                name
                for name in names
                if raw.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {_ATTACHED}.{self.quote(name)})"
                ).fetchone()[0]
            }

    def restore_baseline(
        self, source: str, tables: Collection[str], *, exact: bool = False
    ) -> None:
        if not tables:
            return
        with (
            self._attached(source),
            transaction.atomic(using=self.connection.alias),
            self.connection.cursor() as cursor,
        ):
            cursor.execute("PRAGMA defer_foreign_keys = ON")
            for table in sorted(tables):
                for sql in self._restore_sql(cursor, table, exact):
                    cursor.execute(sql)

    def _restore_sql(self, cursor: Any, table: str, exact: bool) -> list[str]:
        quoted = self.quote(table)
        cursor.execute(f"PRAGMA main.table_xinfo({quoted})")
        # table_xinfo's hidden column: 2 and 3 are generated columns.
        target = [(row[1], row[5]) for row in cursor.fetchall() if row[6] not in (2, 3)]
        cursor.execute(f"PRAGMA {_ATTACHED}.table_info({quoted})")
        in_source = {row[1] for row in cursor.fetchall()}
        present = [(name, pk) for name, pk in target if name in in_source]
        columns = [self.quote(name) for name, _ in present]
        key = [
            self.quote(name) for name, pk in sorted(present, key=lambda c: c[1]) if pk
        ]
        cols = ", ".join(columns)
        origin = f"{_ATTACHED}.{quoted}"
        if exact:
            # Keys compared with = first, so that the lookups use their
            # index; IS compares NULLs as equal.
            def same(a: str, b: str) -> str:
                return " AND ".join(
                    [f"{a}.{c} = {b}.{c}" for c in key]
                    + [f"{a}.{c} IS {b}.{c}" for c in columns if c not in key]
                )

            return [
                f"DELETE FROM main.{quoted} AS t WHERE NOT EXISTS"
                f" (SELECT 1 FROM {origin} AS b WHERE {same('b', 't')})",
                f"INSERT INTO main.{quoted} ({cols}) SELECT {cols} FROM {origin} AS b"
                f" WHERE NOT EXISTS (SELECT 1 FROM main.{quoted} AS t WHERE {same('t', 'b')})",
            ]
        # "WHERE true" keeps ON CONFLICT from being read as a join's.
        sql = (
            f"INSERT INTO main.{quoted} ({cols}) SELECT {cols} FROM {origin} WHERE true"
        )
        rest = [c for c in columns if c not in key]
        if not key:
            return [sql]
        if not rest:
            return [f"{sql} ON CONFLICT ({', '.join(key)}) DO NOTHING"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in rest)
        return [f"{sql} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"]
