"""The contract every clone engine keeps, checked on each real engine."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from testbed._engines import EngineError

SCHEMA = [
    "CREATE TABLE author (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL)",
    "CREATE TABLE book (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL "
    "REFERENCES author (id), title VARCHAR(50) NOT NULL)",
]


def execute(engine: Any, name: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run statements on database ``name``; return the last one's rows."""
    conn = engine.connect(name)
    rows: list[tuple[Any, ...]] = []
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                rows = list(cursor.fetchall()) if cursor.description else []
        if not conn.get_autocommit():
            conn.commit()
    finally:
        conn.close()
    return rows


def make_template(engine: Any, suffix: str = "tbt_contract_1") -> str:
    name = engine.derive_name(suffix, persistent=True)
    engine.create_empty(name, f'"building {name}"')
    execute(
        engine,
        name,
        *SCHEMA,
        "INSERT INTO author (id, name) VALUES (1, 'Ann'), (2, 'Bob')",
        "INSERT INTO book (id, author_id, title) VALUES (1, 1, 'A'), (2, 2, 'B')",
    )
    engine.seal(name, f'"sealed {name}"')
    return name


def test_create_empty_records_the_mark(engine: Any) -> None:
    name = engine.derive_name("tbc_mark", persistent=True)
    assert not engine.exists(name)
    assert engine.read_mark(name) is None
    engine.create_empty(name, '{"mine": true}')
    assert engine.exists(name)
    assert engine.read_mark(name) == '{"mine": true}'
    engine.write_mark(name, '{"mine": "again"}')
    assert engine.read_mark(name) == '{"mine": "again"}'
    with pytest.raises(EngineError):
        engine.create_empty(name, "x")


def test_derived_names_keep_the_suffix_and_fit(engine: Any) -> None:
    name = engine.derive_name("tbt_integration_0123456789ab", persistent=True)
    assert "tbt_integration_0123456789ab" in name
    assert len(name) <= engine.max_name_length


def test_clone_copies_schema_and_data(engine: Any) -> None:
    template = make_template(engine)
    assert engine.read_mark(template) == f'"sealed {template}"'
    target = engine.derive_name("tbc_contract_a", persistent=False)
    engine.clone(template, target, '"clone"')
    assert engine.read_mark(target) == '"clone"'
    rows = execute(
        engine,
        target,
        "SELECT a.name, b.title FROM book b JOIN author a ON a.id = b.author_id ORDER BY b.id",
    )
    assert rows == [("Ann", "A"), ("Bob", "B")]
    # The clone is independent of the template and of other clones.
    execute(engine, target, "DELETE FROM book")
    other = engine.derive_name("tbc_contract_b", persistent=False)
    engine.clone(template, other, '"clone b"')
    assert execute(engine, other, "SELECT COUNT(*) FROM book") == [(2,)]
    assert execute(engine, target, "SELECT COUNT(*) FROM book") == [(0,)]
    engine._drop(target)
    engine._drop(other)
    assert not engine.exists(target)


def test_copy_from_reads_a_foreign_database(
    engine: Any, test_settings: dict[str, Any]
) -> None:
    source = engine.derive_name("foreign_source", persistent=True)
    engine.create_empty(source, "not ours")  # stands for a database we don't own
    execute(engine, source, *SCHEMA, "INSERT INTO author (id, name) VALUES (7, 'Cy')")
    target = engine.derive_name("tbt_copied", persistent=True)
    engine.copy_from(engine.settings_for(source), target, '"copy"')
    assert execute(engine, target, "SELECT id, name FROM author") == [(7, "Cy")]
    assert engine.read_mark(target) == '"copy"'
    # The source is untouched, mark included.
    assert execute(engine, source, "SELECT id, name FROM author") == [(7, "Cy")]
    assert engine.read_mark(source) == "not ours"


def test_list_databases(engine: Any) -> None:
    a = engine.derive_name("tbc_list_a", persistent=True)
    engine.create_empty(a, '"a"')
    listed = {info.name: info for info in engine.list_databases(engine.base_name)}
    assert a in listed
    assert listed[a].mark == '"a"'


def test_lock_excludes_a_second_holder(engine: Any) -> None:
    order: list[str] = []
    holding = threading.Event()

    def hold() -> None:
        with engine.lock("contract-lock", timeout=10):
            order.append("first in")
            holding.set()
            time.sleep(0.5)
            order.append("first out")

    from testbed._engines import engine_for

    other = engine_for(engine.settings, engine.alias)
    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(10)
    try:
        with pytest.raises(TimeoutError), other.lock("contract-lock", timeout=0.1):
            pass
        with other.lock("contract-lock", timeout=10):
            order.append("second in")
    finally:
        thread.join()
        other.close()
    assert order == ["first in", "first out", "second in"]
