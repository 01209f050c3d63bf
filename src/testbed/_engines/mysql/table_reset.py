"""MariaDB's and MySQL's table operations on a live test database (see
``testbed._engines._table_reset``).

Emptying tables is Django's own flush statement for them (``DELETE FROM``
with foreign key checks off). Signatures are ``CHECKSUM TABLE``: a scan,
and content alone, so a table equals the baseline's exactly when their
checksums match. The baseline of the migrated state is the schema
template itself, a database on the same server that any session can read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Hashable, Iterable, Iterator
from typing import Any

from django.db import transaction

from testbed._engines._table_reset import TableReset
from testbed._engines.mysql.connection import OWN_PREFIX, quote


class MySQLTableReset(TableReset):
    vendor = "mysql"

    def _exists_query(self, table: str) -> str:
        return f"SELECT %s FROM DUAL WHERE EXISTS (SELECT 1 FROM {quote(table)})"

    def quote(self, table: str) -> str:
        # Django's quote_name leaves embedded backticks alone.
        return quote(table)

    def _foreign_keys(self) -> Iterable[tuple[str, str]]:
        rows = self._rows(
            "SELECT TABLE_NAME, REFERENCED_TABLE_NAME"
            " FROM information_schema.REFERENTIAL_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = DATABASE() AND UNIQUE_CONSTRAINT_SCHEMA = DATABASE()"
        )
        return [(str(child), str(parent)) for child, parent in rows]

    def signatures(self, tables: Iterable[str]) -> dict[str, Hashable]:
        names = sorted(set(tables))
        if not names:
            return {}
        rows = self._rows("CHECKSUM TABLE " + ", ".join(quote(t) for t in names))
        # One row per table, in the order asked; a missing table's is NULL.
        return {name: row[1] for name, row in zip(names, rows, strict=True)}

    @contextlib.contextmanager
    def _unchecked(self) -> Iterator[Any]:
        """A cursor in a transaction with foreign key checks off, as Django's
        flush runs; they are back on afterwards."""
        with (
            transaction.atomic(using=self.connection.alias),
            self.connection.cursor() as cursor,
        ):
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            try:
                yield cursor
            finally:
                cursor.execute("SET FOREIGN_KEY_CHECKS = 1")

    # --- the migrated state ------------------------------------------------------

    def baseline_tables(self, source: str) -> set[str] | None:
        if not self._rows(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [source]
        ):
            return None
        rows = self._rows(
            "SELECT TABLE_NAME FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            [source],
        )
        names = sorted(str(r[0]) for r in rows if not str(r[0]).startswith(OWN_PREFIX))
        if not names:
            return set()
        sql = " UNION ALL ".join(
            f"SELECT %s FROM DUAL WHERE EXISTS (SELECT 1 FROM {quote(source)}.{quote(t)})"
            for t in names
        )
        return {str(row[0]) for row in self._rows(sql, names)}

    def restore_baseline(
        self, source: str, tables: Collection[str], *, exact: bool = False
    ) -> None:
        if not tables:
            return
        database = str(self.connection.settings_dict["NAME"])
        with self._unchecked() as cursor:
            for table in sorted(tables):
                for sql in self._restore_sql(cursor, database, source, table, exact):
                    cursor.execute(sql)

    @staticmethod
    def _restore_sql(
        cursor: Any, database: str, source: str, table: str, exact: bool
    ) -> list[str]:
        cursor.execute(
            "SELECT TABLE_SCHEMA, COLUMN_NAME, COLUMN_KEY, EXTRA"
            " FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA IN (%s, %s) AND TABLE_NAME = %s"
            " ORDER BY ORDINAL_POSITION",
            [database, source, table],
        )
        target: list[str] = []
        key: list[str] = []
        in_source: set[str] = set()
        for schema, column, column_key, extra in cursor.fetchall():
            if schema == source:
                in_source.add(column)
                continue
            generated = any(
                word in (extra or "").upper()
                for word in ("VIRTUAL", "STORED GENERATED", "PERSISTENT")
            )
            if not generated:
                target.append(column)
            if column_key == "PRI":
                key.append(column)
        columns = [c for c in target if c in in_source]
        cols = ", ".join(quote(c) for c in columns)
        origin = f"{quote(source)}.{quote(table)}"
        if exact:
            # Keys first, so that the lookups use the primary key's index;
            # <=> so that NULLs compare equal.
            ordered = [c for c in key if c in columns] + [
                c for c in columns if c not in key
            ]

            def same(a: str, b: str) -> str:
                return " AND ".join(
                    f"{a}.{quote(c)} <=> {b}.{quote(c)}" for c in ordered
                )

            return [
                f"DELETE t FROM {quote(table)} AS t WHERE NOT EXISTS"
                f" (SELECT 1 FROM {origin} AS b WHERE {same('b', 't')})",
                f"INSERT INTO {quote(table)} ({cols}) SELECT {cols} FROM {origin} AS b"
                f" WHERE NOT EXISTS (SELECT 1 FROM {quote(table)} AS t WHERE {same('t', 'b')})",
            ]
        sql = (
            f"INSERT INTO {quote(table)} ({cols}) SELECT * FROM "
            f"(SELECT {cols} FROM {origin}) AS tb_source"
        )
        rest = [c for c in columns if c not in key]
        if not key or not rest:
            return [sql.replace("INSERT INTO", "INSERT IGNORE INTO", 1)]
        updates = ", ".join(f"{quote(c)} = tb_source.{quote(c)}" for c in rest)
        return [f"{sql} ON DUPLICATE KEY UPDATE {updates}"]
