"""Per-test restore: log what a test changes, and copy just that back.

``prepare_tracking`` adds row triggers that log the primary key of every row
a test inserts, updates or deletes; ``_reset_tracked`` copies those rows back
from the template, after ``signature`` showed that nothing but rows changed.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.backends.utils import CursorWrapper
from django.db.utils import DatabaseError

from testbed._engines._base import EngineError, like_prefix
from testbed._engines.mysql.connection import (
    DIRTY_TABLE,
    ER_ACCESS_DENIED,
    ER_BAD_DB,
    ER_NO_SUCH_TABLE,
    OWN_PREFIX,
    MySQLConnections,
    errno_of,
    quote,
)
from testbed._engines.mysql.schema import user_tables
from testbed._engines.mysql.signature import (
    PROGRAM_PARTS,
    TABLE_PARTS,
    innodb_name,
    probe_changes,
    schema_signature,
)

# Primary key types whose values survive a round trip through the log's
# VARCHAR(255) column and back as an ``IN (...)`` parameter that still uses
# the primary key index.
_INT_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
_TEXT_KEY_TYPES = frozenset({"char", "varchar", "uuid"})
_TEXT_KEY_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8", "latin1", "ascii"})

# Rows per ``IN (...)`` list when restoring logged rows.
_ROW_BATCH = 1000


def _utf8_literal(text: str) -> str:
    # A hex literal needs no escaping whatever the sql_mode.
    return f"_utf8mb4 X'{text.encode().hex()}'" if text else "''"


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


class MySQLTracking(MySQLConnections):
    """``prepare_tracking`` and ``_reset_tracked``."""

    def __init__(self, settings: dict[str, Any], alias: str) -> None:
        super().__init__(settings, alias)
        self._tracking: dict[str, _Tracking] = {}

    def prepare_tracking(self, name: str, template: str) -> bool:
        with self._admin() as cur:
            try:
                return self._prepare_tracking(cur, name, template)
            except DatabaseError as exc:
                if errno_of(exc) in ER_ACCESS_DENIED:
                    self.tracking_refused = (
                        f"the user may not create triggers in it ({exc}); grant "
                        "it TRIGGER (and SUPER, or set log_bin_trust_function_"
                        "creators, where binary logging is on)"
                    )
                    return False
                raise EngineError(
                    f"Cannot set up change tracking in {name!r}: {exc}"
                ) from exc

    def _prepare_tracking(self, cur: CursorWrapper, name: str, template: str) -> bool:
        tables, _ = user_tables(cur, name)
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
            [like_prefix(innodb_name(name) + "/")],
        )
        found = {row[0] for row in cur.fetchall()}
        if any(f"{innodb_name(name)}/{innodb_name(t)}" not in found for t in innodb):
            # Without every table's InnoDB id a TRUNCATE would go unseen.
            self.tracking_refused = (
                "the server does not show every table's InnoDB id, without "
                f"which a TRUNCATE would go unseen (information_schema.{dictionary})"
            )
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
        signature = schema_signature(cur, name, mariadb=bool(self._mariadb))
        probe = probe_changes(cur, name, mariadb=bool(self._mariadb))
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
                probe = probe_changes(cur, name, mariadb=bool(self._mariadb))
                if probe.ddl is None or probe.ddl != state.ddl:
                    parts = list(TABLE_PARTS)
                    if (
                        probe.program_ddl is None
                        or probe.program_ddl != state.program_ddl
                    ):
                        parts += PROGRAM_PARTS
                    signature = schema_signature(
                        cur, name, parts, mariadb=bool(self._mariadb)
                    )
                    if any(signature.get(p) != state.signature[p] for p in parts):
                        return False
            except DatabaseError as exc:
                if errno_of(exc) in (ER_BAD_DB, ER_NO_SUCH_TABLE):
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
