"""Reading what a database holds: its tables (with the columns a copy sets),
views, triggers, routines and events, each ready to be replayed elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.backends.utils import CursorWrapper

from testbed._engines._base import EngineError
from testbed._engines.mysql.connection import OWN_PREFIX, quote


@dataclass
class Table:
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
class Schema:
    charset: str
    collation: str
    tables: list[Table]
    # (name, SHOW CREATE result row), each to be replayed in this order.
    views: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    triggers: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    routines: list[tuple[str, str, tuple[Any, ...]]] = field(default_factory=list)
    events: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


def read_schema(cur: CursorWrapper, db: str) -> Schema:
    cur.execute(
        "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
        "WHERE SCHEMA_NAME = %s",
        [db],
    )
    row = cur.fetchone()
    if row is None:
        raise EngineError(f"Database {db!r} does not exist.")
    charset, collation = row
    tables, views = user_tables(cur, db)
    for table in tables:
        cur.execute(f"SHOW CREATE TABLE {quote(db)}.{quote(table.name)}")
        table.create = cur.fetchone()[1]
    schema = Schema(charset=charset, collation=collation, tables=tables)
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


def user_tables(cur: CursorWrapper, db: str) -> tuple[list[Table], list[str]]:
    """The user's base tables (largest first) and views in ``db``."""
    cur.execute(
        "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) "
        "FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        [db],
    )
    tables: dict[str, Table] = {}
    views: list[str] = []
    for name, kind, engine, size in cur.fetchall():
        if name.startswith(OWN_PREFIX):
            continue
        if kind == "VIEW":
            views.append(name)
        elif kind == "BASE TABLE":
            tables[name] = Table(name, engine, int(size or 0), [])
        else:
            raise EngineError(f"{db}.{name} is a {kind}, which testbed cannot copy.")
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
