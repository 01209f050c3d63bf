"""SQLite specifics: WAL-mode databases and shared-cache memory clones."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from testbed._engines import EngineError, engine_for


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Any:
    from django.db import connections

    settings = dict(connections.settings["default"])
    settings["NAME"] = str(tmp_path / "test_db.sqlite3")
    return engine_for(settings, "default")


def _wal_database(path: Path) -> sqlite3.Connection:
    """A WAL database whose rows are still only in the -wal file: the open
    connection keeps SQLite from checkpointing them into the main file."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany(
        "INSERT INTO item (name) VALUES (?)", [(f"n{i}",) for i in range(100)]
    )
    conn.commit()
    return conn


def _count(path: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM item").fetchone()[0])
    finally:
        conn.close()


def test_a_plain_file_copy_loses_wal_content(tmp_path: Path) -> None:
    # What Django's clone_test_db does; the reason testbed seals templates.
    path = tmp_path / "wal.sqlite3"
    conn = _wal_database(path)
    try:
        shutil.copy(path, tmp_path / "copy.sqlite3")
        with pytest.raises(sqlite3.OperationalError, match="no such table: item"):
            _count(str(tmp_path / "copy.sqlite3"))
    finally:
        conn.close()


def test_sealed_template_holds_the_wal_content(sqlite_engine: Any) -> None:
    name = sqlite_engine.derive_name("tbt_wal", persistent=True)
    sqlite_engine.create_empty(name, '"t"')
    conn = _wal_database(Path(name))
    conn.close()  # a builder is done before sealing
    sqlite_engine.seal(name, '"sealed"')
    assert not Path(name + "-wal").exists()
    clone = sqlite_engine.derive_name("tbc_wal", persistent=False)
    sqlite_engine.clone(name, clone, '"c"')
    assert _count(clone) == 100


def test_copy_from_a_wal_source_in_use(sqlite_engine: Any, tmp_path: Path) -> None:
    source = tmp_path / "dev.sqlite3"
    writer = _wal_database(source)
    try:
        before = hashlib.sha256(source.read_bytes()).hexdigest()
        target = sqlite_engine.derive_name("tbt_dev", persistent=True)
        sqlite_engine.copy_from({"NAME": str(source)}, target, '"copy"')
        assert _count(target) == 100
        # Only read: the main file is byte for byte what it was.
        assert hashlib.sha256(source.read_bytes()).hexdigest() == before
        assert writer.execute("SELECT COUNT(*) FROM item").fetchone()[0] == 100
    finally:
        writer.close()


def test_copy_from_refuses_memory_and_missing_sources(
    sqlite_engine: Any, tmp_path: Path
) -> None:
    target = sqlite_engine.derive_name("tbt_x", persistent=True)
    with pytest.raises(EngineError, match="a template source must be a database file"):
        sqlite_engine.copy_from({"NAME": ":memory:"}, target, "m")
    missing = tmp_path / "missing.sqlite3"
    with pytest.raises(EngineError, match=f"SQLite database {missing} does not exist"):
        sqlite_engine.copy_from({"NAME": str(missing)}, target, "m")


def test_memory_clones_are_shared_and_dropped(tmp_path: Path) -> None:
    from django.db import connections

    settings = dict(connections.settings["default"])
    settings["NAME"] = "file:memorydb_tbtest?mode=memory&cache=shared"
    engine = engine_for(settings, "default")
    template = engine.derive_name("tbt_mem", persistent=True)
    assert template.endswith(".sqlite3")  # templates outlive the process
    engine.create_empty(template, '"t"')
    conn = _wal_database(Path(template))
    conn.close()
    engine.seal(template, '"sealed"')
    clone = engine.derive_name("tbc_mem", persistent=False)
    assert clone == "file:memorydb_tbtest_tbc_mem?mode=memory&cache=shared"
    engine.clone(template, clone, '"c"')
    reader = sqlite3.connect(clone, uri=True)
    try:
        assert reader.execute("SELECT COUNT(*) FROM item").fetchone()[0] == 100
    finally:
        reader.close()
    assert clone in {info.name for info in engine.list_databases(settings["NAME"])}
    engine._drop(clone)
    engine._drop(template)
    gone = sqlite3.connect(clone, uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            gone.execute("SELECT COUNT(*) FROM item")
    finally:
        gone.close()
