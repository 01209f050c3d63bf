"""How a reset knows that only rows changed: a digest of the schema, and the
server's DDL counters, read before every reset in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.backends.utils import CursorWrapper

from testbed._engines._base import like_prefix
from testbed._engines.mysql.connection import DIRTY_TABLE, quote


def innodb_name(text: str) -> str:
    # InnoDB's dictionary names tables "db/table" in the filename character
    # set; this covers ASCII, and prepare_tracking checks every table was found.
    return "".join(
        c if c.isascii() and (c.isalnum() or c == "_") else f"@{ord(c):04x}"
        for c in text
    )


@dataclass
class Probe:
    ddl: int | None = None
    program_ddl: int | None = None
    counters: dict[str, int | None] = field(default_factory=dict)
    logged: list[tuple[str, str]] = field(default_factory=list)


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
TABLE_PARTS = (
    "TABLES",
    "COLUMNS",
    "STATISTICS",
    "REFERENTIAL_CONSTRAINTS",
    "KEY_COLUMN_USAGE",
    "CHECK_CONSTRAINTS",
    "INNODB",
)
PROGRAM_PARTS = ("TRIGGERS", "VIEWS", "ROUTINES", "EVENTS")
_ALL_PARTS = TABLE_PARTS + PROGRAM_PARTS

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


def schema_signature(
    cur: CursorWrapper, db: str, parts: Sequence[str] = _ALL_PARTS, *, mariadb: bool
) -> dict[str, str]:
    """A digest of each of ``parts`` of ``db``'s schema, from information_schema."""
    selects = []
    for part in parts:
        if part == "INNODB":
            # A table's InnoDB id changes when it is truncated or rebuilt,
            # which no trigger sees.
            dictionary = "INNODB_SYS_TABLES" if mariadb else "INNODB_TABLES"
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
        {"db": db, "innodb": like_prefix(innodb_name(db) + "/")},
    )
    return {str(part): str(digest) for part, digest in cur.fetchall()}


def probe_changes(cur: CursorWrapper, db: str, *, mariadb: bool) -> Probe:
    """One round trip: the server's DDL counters, ``db``'s AUTO_INCREMENT
    counters and its change log."""
    status = (
        "information_schema.GLOBAL_STATUS"
        if mariadb
        else "performance_schema.global_status"
    )

    # One collation for every branch: MySQL refuses a UNION of columns
    # whose collations differ.
    def text(expression: str) -> str:
        return f"CONVERT(CAST({expression} AS CHAR) USING utf8mb4) COLLATE utf8mb4_bin"

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
    probe = Probe()
    for kind, key, value in cur.fetchall():
        if kind == "c":
            probe.program_ddl = None if key is None else int(key)
            probe.ddl = None if value is None else int(value)
        elif kind == "a":
            probe.counters[key] = None if value is None else int(value)
        else:
            probe.logged.append((key, value))
    return probe
