"""Row-level work on a live test database, through the test's own connection.

A ``TransactionTestCase`` ends with Django's flush: every table of the
project emptied, then ``post_migrate`` run again. The core (``_reset``) gets
the same result by emptying only the tables that hold rows, and keeping
what ``post_migrate`` made while nothing touched it. ``serialized_rollback``
puts the migrated state back from a baseline the engine keeps next to the
database, instead of a JSON dump. This module is each vendor's SQL for
that: it knows tables and rows, nothing about tests.

Every method runs on the Django connection the test itself uses, so it sees
what the test committed, and neither a new session nor a
``connection_created`` receiver is involved. Table names are Django's
(``Model._meta.db_table``), quoted with the backend's ``quote_name``.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Hashable, Iterable
from typing import Any, ClassVar

from django.db.backends.base.base import BaseDatabaseWrapper


class TableReset(abc.ABC):
    """One vendor's table operations on ``connection``."""

    vendor: ClassVar[str]
    # Whether Django's flush with ``allow_cascade`` also empties the tables
    # that reference the flushed ones (PostgreSQL's TRUNCATE ... CASCADE,
    # SQLite's graph of references); MySQL's DELETE does not.
    flush_cascades: ClassVar[bool] = False
    # Whether ``signatures`` reflect content alone, so that two databases
    # holding the same rows have the same ones (otherwise they only tell
    # whether one table changed since they were read).
    content_signatures: ClassVar[bool] = True

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        # What the core keeps between resets of one database, for the
        # engine's own use (whether the role is a superuser, ...).
        self.memo: dict[str, Any] = {}

    def close(self) -> None:  # noqa: B027 - most keep nothing open
        """Let go of whatever the operations keep open between resets."""

    def quote(self, table: str) -> str:
        return str(self.connection.ops.quote_name(table))

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    # --- reading ----------------------------------------------------------------

    def existing_tables(self) -> set[str]:
        """The tables (not views) in the database, as Django's introspection
        lists them."""
        return set(self.connection.introspection.table_names())

    def _exists_query(self, table: str) -> str:
        return f"SELECT %s WHERE EXISTS (SELECT 1 FROM {self.quote(table)})"

    def nonempty(self, tables: Iterable[str]) -> set[str]:
        """Those of ``tables`` that hold at least one row, in one query."""
        names = sorted(set(tables))
        if not names:
            return set()
        sql = " UNION ALL ".join(self._exists_query(t) for t in names)
        return {str(row[0]) for row in self._rows(sql, names)}

    def _foreign_keys(self) -> Iterable[tuple[str, str]]:
        """(table, table it references) for every foreign key."""
        return ()

    def referencing(self, tables: Collection[str]) -> set[str]:
        """``tables`` and every table whose foreign keys lead to one of them,
        however indirectly: what a cascading flush of ``tables`` empties."""
        found = set(tables)
        if not found:
            return found
        referenced_by: dict[str, set[str]] = {}
        for child, parent in self._foreign_keys():
            referenced_by.setdefault(parent, set()).add(child)
        todo = list(found)
        while todo:
            for child in referenced_by.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    @abc.abstractmethod
    def signatures(self, tables: Iterable[str]) -> dict[str, Hashable]:
        """For each of ``tables``, a value that changes whenever its rows do."""

    # --- writing ----------------------------------------------------------------

    def empty(self, tables: Collection[str]) -> None:
        """Delete every row of ``tables`` (sequences untouched), as Django's
        flush of them does."""
        from django.core.management.color import no_style

        if not tables:
            return
        ops = self.connection.ops
        ops.execute_sql_flush(
            ops.sql_flush(no_style(), sorted(tables), reset_sequences=False)
        )

    # --- the migrated state, for serialized_rollback ------------------------------

    @abc.abstractmethod
    def baseline_tables(self, source: str) -> set[str] | None:
        """The tables that hold rows in the baseline ``source`` names; None
        if there is no such baseline."""

    @abc.abstractmethod
    def restore_baseline(
        self, source: str, tables: Collection[str], *, exact: bool = False
    ) -> None:
        """Write each baseline row of ``tables`` back, as Django's
        ``deserialize_db_from_string`` saves each serialized object: rows
        with the same primary key are updated, the others inserted, and no
        other row is touched. ``exact``: also delete the rows the baseline
        does not hold, so that each table holds the baseline's rows and no
        others; rows already equal to the baseline's are not written."""
