"""The MariaDB/MySQL engine against a real server: clones, marks, locks and
per-test restore."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.utils import DatabaseError, IntegrityError

from testbed._engines import EngineError, engine_for
from testbed._engines.mysql.connection import quote
from testbed._engines.mysql.engine import MySQLEngine
from tests.conftest import ALIAS, require_vendor, unique_db_name

TEMPLATE_DDL = [
    "CREATE TABLE author (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL, UNIQUE KEY (name))",
    "CREATE TABLE book (id BIGINT AUTO_INCREMENT PRIMARY KEY, author_id INT NOT NULL, "
    "title VARCHAR(100) NOT NULL, price DECIMAL(8,2) DEFAULT 1.00, "
    "title_len INT AS (CHAR_LENGTH(title)) STORED, secret INT INVISIBLE DEFAULT 7, KEY (title), "
    "CONSTRAINT book_author FOREIGN KEY (author_id) REFERENCES author (id))",
    "CREATE TABLE review (id INT AUTO_INCREMENT PRIMARY KEY, book_id BIGINT NOT NULL, stars INT NOT NULL, "
    "CONSTRAINT review_book FOREIGN KEY (book_id) REFERENCES book (id) ON DELETE CASCADE)",
    "CREATE TABLE tag (code VARCHAR(20) PRIMARY KEY, label VARCHAR(50))",
    "CREATE TABLE book_tag (book_id BIGINT NOT NULL, tag_code VARCHAR(20) NOT NULL, PRIMARY KEY (book_id, tag_code))",
    "CREATE TABLE note (body VARCHAR(100))",
    "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, what VARCHAR(50))",
    "CREATE TABLE event (id INT AUTO_INCREMENT PRIMARY KEY, kind VARCHAR(20))",
    # Not transactional: a rolled back test keeps its changes here.
    "CREATE TABLE hits (id INT AUTO_INCREMENT PRIMARY KEY, page VARCHAR(20)) ENGINE=MyISAM",
    "CREATE TABLE bulk (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL)",
    "CREATE TRIGGER event_audit AFTER INSERT ON event FOR EACH ROW INSERT INTO audit (what) VALUES (NEW.kind)",
    "CREATE VIEW book_titles AS SELECT b.id, b.title, a.name FROM book b JOIN author a ON a.id = b.author_id",
    "CREATE PROCEDURE count_books() SELECT COUNT(*) FROM book",
]
TEMPLATE_DATA = [
    # id 0 must survive a copy as 0, not become a fresh AUTO_INCREMENT value.
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
    "INSERT INTO author (id, name) VALUES (0, 'zero'), (1, 'ann'), (2, 'bob'), (3, 'cy'), (4, 'dee')",
    "INSERT INTO book (author_id, title, price) "
    "SELECT a.id, CONCAT('t', a.id, '-', n.n), n.n FROM author a "
    "JOIN (SELECT 1 n UNION SELECT 2 UNION SELECT 3 UNION SELECT 4) n",
    "UPDATE book SET secret = id * 10",
    "INSERT INTO review (book_id, stars) SELECT id, id % 5 FROM book",
    "INSERT INTO review (book_id, stars) SELECT id, 5 FROM book WHERE id % 2 = 0",
    "INSERT INTO tag VALUES ('py', 'Python'), ('db', 'Databases'), ('web', 'Web')",
    "INSERT INTO book_tag SELECT id, 'py' FROM book WHERE id < 8",
    "INSERT INTO note VALUES ('first'), ('second'), ('first')",
    "INSERT INTO event (kind) VALUES ('made'), ('sold')",
    "INSERT INTO hits (page) VALUES ('/'), ('/about')",
    "INSERT INTO bulk (v) SELECT a.d * 1000 + b.d * 100 + c.d * 10 + e.d AS v FROM "
    + " CROSS JOIN ".join(
        f"(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 "
        f"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) {x}"
        for x in "abce"
    )
    + " HAVING v < 1500 ORDER BY v",
    "ANALYZE TABLE bulk",
    # Counters above max(id) + 1, as after deleting rows.
    "ALTER TABLE author AUTO_INCREMENT = 100",
    "ALTER TABLE book AUTO_INCREMENT = 500",
]
USER_TABLES = (
    "audit",
    "author",
    "book",
    "book_tag",
    "bulk",
    "event",
    "hits",
    "note",
    "review",
    "tag",
)


@pytest.fixture
def mysql_settings() -> dict[str, Any]:
    require_vendor("mysql")
    from django.db import connections

    base = dict(connections.settings[ALIAS["mysql"]])
    name = unique_db_name()
    base["NAME"] = name
    base["TEST"] = {**base["TEST"], "NAME": name}
    return base


@pytest.fixture
def mysql_engine(mysql_settings: dict[str, Any]) -> Iterator[MySQLEngine]:
    engine = engine_for(mysql_settings, ALIAS["mysql"])
    assert isinstance(engine, MySQLEngine)
    yield engine
    engine.close()
    for info in engine.list_databases(engine.base_name):
        engine._drop(info.name)
    engine.close()


def run(engine: MySQLEngine, db: str, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements`` in a new session on ``db`` ("" for none); the last one's rows."""
    conn = engine.connect(db)
    try:
        rows: list[tuple[Any, ...]] = []
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall()) if cur.description else []
        return rows
    finally:
        conn.close()


def make_template(engine: MySQLEngine, suffix: str = "tpl") -> str:
    name = engine.derive_name(suffix, persistent=True)
    engine.create_empty(name, "template-building")
    run(engine, name, *TEMPLATE_DDL, *TEMPLATE_DATA)
    engine.seal(name, "template-sealed")
    return name


def columns(engine: MySQLEngine, db: str, table: str) -> list[str]:
    rows = run(
        engine,
        "",
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION",
    )
    return [r[0] for r in rows]


def snapshot(
    engine: MySQLEngine, db: str, tables: tuple[str, ...] = USER_TABLES
) -> dict[str, Any]:
    """Each table's definition (AUTO_INCREMENT included), rows (invisible
    columns included) and checksum."""
    result: dict[str, Any] = {}
    for table in tables:
        cols = ", ".join(quote(c) for c in columns(engine, db, table))
        (create,) = run(engine, "", f"SHOW CREATE TABLE {quote(db)}.{quote(table)}")
        rows = run(engine, "", f"SELECT {cols} FROM {quote(db)}.{quote(table)}")
        ((_, checksum),) = run(engine, "", f"CHECKSUM TABLE {quote(db)}.{quote(table)}")
        result[table] = (create[1], sorted(rows, key=repr), checksum)
    return result


def auto_increments(engine: MySQLEngine, db: str) -> dict[str, int | None]:
    rows = run(
        engine,
        "",
        "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES "
        f"WHERE TABLE_SCHEMA = '{db}' AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME NOT LIKE '!_testbed!_%' ESCAPE '!'",
    )
    return dict(rows)


def table_names(engine: MySQLEngine, db: str) -> list[str]:
    rows = run(
        engine,
        "",
        f"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'",
    )
    return sorted(r[0] for r in rows)


# --- naming, marks, creation ----------------------------------------------------


def test_derive_name_fits_the_server_limit(mysql_engine: MySQLEngine) -> None:
    assert (
        mysql_engine.derive_name("tpl_abc", persistent=True)
        == f"{mysql_engine.base_name}_tpl_abc"
    )
    long_engine = engine_for(
        {**mysql_engine.settings, "NAME": "x" * 60}, ALIAS["mysql"]
    )  # no server access needed
    first = long_engine.derive_name("clone_1", persistent=False)
    second = long_engine.derive_name("clone_2", persistent=False)
    assert len(first) == len(second) == 64
    assert first != second
    assert first == long_engine.derive_name("clone_1", persistent=False)
    assert first.startswith("x" * 20)


def test_create_empty_and_mark_round_trip(mysql_engine: MySQLEngine) -> None:
    name = mysql_engine.derive_name("new", persistent=True)
    assert not mysql_engine.exists(name)
    assert mysql_engine.read_mark(name) is None
    mysql_engine.create_empty(name, "mark-1")
    assert mysql_engine.exists(name)
    assert mysql_engine.read_mark(name) == "mark-1"
    mysql_engine.write_mark(name, "mark-2 ünïcode")
    assert mysql_engine.read_mark(name) == "mark-2 ünïcode"
    mysql_engine.seal(name, "sealed")
    assert mysql_engine.read_mark(name) == "sealed"
    with pytest.raises(EngineError, match=name):
        mysql_engine.create_empty(name, "again")
    assert mysql_engine.read_mark(name) == "sealed"
    # A database without a mark table has no mark.
    bare = mysql_engine.derive_name("bare", persistent=True)
    run(mysql_engine, "", f"CREATE DATABASE {quote(bare)}")
    assert mysql_engine.read_mark(bare) is None


def test_create_empty_uses_the_test_charset_and_collation(
    mysql_settings: dict[str, Any],
) -> None:
    settings = {
        **mysql_settings,
        "TEST": {
            **mysql_settings["TEST"],
            "CHARSET": "latin1",
            "COLLATION": "latin1_bin",
        },
    }
    engine = engine_for(settings, ALIAS["mysql"])
    assert isinstance(engine, MySQLEngine)
    name = engine.derive_name("latin", persistent=True)
    try:
        engine.create_empty(name, "m")
        rows = run(
            engine,
            "",
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            f"WHERE SCHEMA_NAME = '{name}'",
        )
        assert rows == [("latin1", "latin1_bin")]
    finally:
        engine._drop(name)
        engine.close()


def test_server_version(mysql_engine: MySQLEngine) -> None:
    version = mysql_engine.server_version()
    assert version
    assert version[0].isdigit()


# --- clone ----------------------------------------------------------------------


def test_clone_copies_schema_data_views_triggers_and_routines(
    mysql_engine: MySQLEngine,
) -> None:
    template = make_template(mysql_engine)
    clone = mysql_engine.derive_name("c1", persistent=False)
    mysql_engine.clone(template, clone, "clone-mark")

    assert snapshot(mysql_engine, clone) == snapshot(mysql_engine, template)
    assert auto_increments(mysql_engine, clone)["book"] == 500
    assert run(mysql_engine, clone, "SELECT name FROM author WHERE id = 0") == [
        ("zero",)
    ]
    # Foreign keys came along and are enforced.
    with pytest.raises(IntegrityError):
        run(
            mysql_engine,
            clone,
            "INSERT INTO book (author_id, title) VALUES (999, 'orphan')",
        )
    # The view reads the clone's tables, not the template's.
    run(mysql_engine, clone, "UPDATE author SET name = 'changed' WHERE id = 1")
    assert ("changed",) in run(
        mysql_engine, clone, "SELECT DISTINCT name FROM book_titles"
    )
    assert ("changed",) not in run(
        mysql_engine, template, "SELECT DISTINCT name FROM book_titles"
    )
    # The trigger fires in the clone and writes to the clone.
    run(mysql_engine, clone, "INSERT INTO event (kind) VALUES ('cloned')")
    assert run(mysql_engine, clone, "SELECT what FROM audit WHERE what = 'cloned'") == [
        ("cloned",)
    ]
    assert (
        run(mysql_engine, template, "SELECT what FROM audit WHERE what = 'cloned'")
        == []
    )
    # Copying rows did not fire it: the audit rows are the template's two.
    assert run(mysql_engine, template, "SELECT COUNT(*) FROM audit") == [(2,)]
    assert run(mysql_engine, clone, "CALL count_books()") == [(20,)]


def test_clone_gets_its_own_mark_and_no_testbed_tables(
    mysql_engine: MySQLEngine,
) -> None:
    template = make_template(mysql_engine)
    run(mysql_engine, template, "CREATE TABLE _testbed_extra (id INT PRIMARY KEY)")
    clone = mysql_engine.derive_name("c2", persistent=False)
    mysql_engine.clone(template, clone, "clone-own-mark")
    assert mysql_engine.read_mark(clone) == "clone-own-mark"
    assert mysql_engine.read_mark(template) == "template-sealed"
    assert "_testbed_extra" not in table_names(mysql_engine, clone)
    assert run(mysql_engine, clone, "SELECT COUNT(*) FROM _testbed_mark") == [(1,)]


def test_clone_refuses_an_existing_target(mysql_engine: MySQLEngine) -> None:
    template = make_template(mysql_engine)
    target = mysql_engine.derive_name("taken", persistent=False)
    mysql_engine.create_empty(target, "someone-else")
    with pytest.raises(EngineError, match=target):
        mysql_engine.clone(template, target, "mine")
    assert mysql_engine.read_mark(target) == "someone-else"
    assert table_names(mysql_engine, target) == ["_testbed_mark"]


def test_clone_of_a_missing_template_fails_clearly(mysql_engine: MySQLEngine) -> None:
    missing = mysql_engine.derive_name("missing", persistent=True)
    target = mysql_engine.derive_name("c3", persistent=False)
    with pytest.raises(EngineError, match=missing):
        mysql_engine.clone(missing, target, "m")
    assert not mysql_engine.exists(target)


# --- copy_from --------------------------------------------------------------------


def make_foreign_source(engine: MySQLEngine) -> str:
    """A database testbed does not own: no mark table."""
    name = engine.derive_name("src", persistent=True)
    run(engine, "", f"CREATE DATABASE {quote(name)}")
    run(engine, name, *TEMPLATE_DDL, *TEMPLATE_DATA)
    return name


def source_state(engine: MySQLEngine, db: str) -> Any:
    triggers = run(
        engine,
        "",
        f"SELECT TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{db}'",
    )
    return table_names(engine, db), snapshot(engine, db), sorted(triggers)


@pytest.mark.parametrize("path", ["same server", "mysqldump"])
def test_copy_from_only_reads_the_source(mysql_engine: MySQLEngine, path: str) -> None:
    source = make_foreign_source(mysql_engine)
    source_settings = {**mysql_engine.settings, "NAME": source}
    if path == "mysqldump":
        # The same server reached by its socket counts as another server.
        if mysql_engine.settings["HOST"] not in ("127.0.0.1", ""):
            pytest.skip("needs a local server to fake a second one")
        source_settings["HOST"] = "localhost"
    before = source_state(mysql_engine, source)
    # Another session uses the source, in the middle of a transaction.
    other = mysql_engine.connect(source)
    try:
        with other.cursor() as cur:
            cur.execute(
                "SET SESSION innodb_lock_wait_timeout = 2, lock_wait_timeout = 2"
            )
            cur.execute("START TRANSACTION")
            cur.execute("SELECT COUNT(*) FROM book")
            target = mysql_engine.derive_name("copy", persistent=False)
            mysql_engine.copy_from(source_settings, target, "copy-mark")
            cur.execute("COMMIT")
            # No lock left behind: the other session can lock every table
            # for writing at once.
            tables = ", ".join(f"{quote(t)} WRITE" for t in USER_TABLES)
            cur.execute(f"LOCK TABLES {tables}")
            cur.execute("UNLOCK TABLES")
    finally:
        other.close()
    assert source_state(mysql_engine, source) == before
    assert mysql_engine.read_mark(source) is None
    assert mysql_engine.read_mark(target) == "copy-mark"
    assert snapshot(mysql_engine, target) == before[1]
    assert table_names(mysql_engine, target) == sorted([*before[0], "_testbed_mark"])
    assert run(mysql_engine, target, "SELECT COUNT(*) FROM book_titles") == [(20,)]


@pytest.mark.parametrize("host", ["same", "localhost"])
def test_copy_from_a_missing_source_names_it(
    mysql_engine: MySQLEngine, host: str
) -> None:
    missing = mysql_engine.derive_name("nosuch", persistent=True)
    settings = {**mysql_engine.settings, "NAME": missing}
    if host == "localhost":
        settings["HOST"] = "localhost"
    target = mysql_engine.derive_name("copy2", persistent=False)
    with pytest.raises(EngineError, match=missing):
        mysql_engine.copy_from(settings, target, "m")
    assert not mysql_engine.exists(target)


# --- listing -------------------------------------------------------------------------


def test_list_databases_escapes_like_wildcards(mysql_engine: MySQLEngine) -> None:
    base = mysql_engine.base_name
    wanted = f"{base}_a_1"
    lookalike = f"{base}_ab1"  # matches "_a_" if "_" were a wildcard
    mysql_engine.create_empty(wanted, "mark-wanted")
    run(mysql_engine, "", f"CREATE DATABASE {quote(lookalike)}")
    run(
        mysql_engine,
        wanted,
        "CREATE TABLE t (id INT PRIMARY KEY)",
        "INSERT INTO t VALUES (1)",
        # Sizes come from table statistics, which a busy server may not
        # have computed yet for a new table.
        "ANALYZE TABLE t",
    )

    (info,) = mysql_engine.list_databases(f"{base}_a_")
    assert info.name == wanted
    assert info.mark == "mark-wanted"
    assert info.size_bytes is not None
    assert info.size_bytes > 0
    assert not info.in_use

    everything = {i.name: i for i in mysql_engine.list_databases(base)}
    assert set(everything) == {wanted, lookalike}
    assert everything[lookalike].mark is None

    holder = mysql_engine.connect(wanted)
    try:
        holder.ensure_connection()
        (info,) = mysql_engine.list_databases(f"{base}_a_")
        assert info.in_use
    finally:
        holder.close()


# --- lock ------------------------------------------------------------------------------


def test_lock_excludes_a_second_holder(mysql_settings: dict[str, Any]) -> None:
    first = engine_for(mysql_settings, ALIAS["mysql"])
    second = engine_for(mysql_settings, ALIAS["mysql"])
    key = (
        f"testbed-test-{unique_db_name()}-" + "k" * 80
    )  # longer than the server allows
    try:
        with first.lock(key, timeout=1):
            start = time.monotonic()
            with pytest.raises(TimeoutError), second.lock(key, timeout=0.3):
                pass
            assert time.monotonic() - start >= 0.3
        # Released on exit.
        with second.lock(key, timeout=0.3):
            pass
    finally:
        first.close()
        second.close()


def test_lock_is_released_when_its_holder_dies(mysql_engine: MySQLEngine) -> None:
    key = f"testbed-test-{unique_db_name()}"
    held = threading.Event()
    done = threading.Event()

    def hold() -> None:
        holder = engine_for(mysql_engine.settings, ALIAS["mysql"])
        try:
            with holder.lock(key, timeout=1):
                held.set()
                done.wait(10)
        except DatabaseError:
            pass  # its connection was killed under it
        finally:
            holder.close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(5)
        with pytest.raises(TimeoutError), mysql_engine.lock(key, timeout=0.1):
            pass
        ((session,),) = run(mysql_engine, "", f"SELECT IS_USED_LOCK('{key}')")
        run(mysql_engine, "", f"KILL CONNECTION {int(session)}")
        with mysql_engine.lock(key, timeout=2):
            assert run(mysql_engine, "", f"SELECT IS_FREE_LOCK('{key}')") == [(0,)]
        assert run(mysql_engine, "", f"SELECT IS_FREE_LOCK('{key}')") == [(1,)]
    finally:
        done.set()
        thread.join()


# --- per-test restore -------------------------------------------------------------------


@pytest.fixture
def tracked(mysql_engine: MySQLEngine) -> tuple[MySQLEngine, str, str]:
    template = make_template(mysql_engine)
    clone = mysql_engine.derive_name("tracked", persistent=False)
    mysql_engine.clone(template, clone, "clone-mark")
    assert mysql_engine.prepare_tracking(clone, template)
    return mysql_engine, template, clone


def assert_like_template(engine: MySQLEngine, template: str, clone: str) -> None:
    assert snapshot(engine, clone) == snapshot(engine, template)
    assert auto_increments(engine, clone) == auto_increments(engine, template)
    assert run(engine, clone, "SELECT COUNT(*) FROM _testbed_dirty") == [(0,)]


def test_reset_restores_inserts_updates_and_deletes(
    tracked: tuple[MySQLEngine, str, str],
) -> None:
    engine, template, clone = tracked
    pristine = snapshot(engine, template)
    for round_ in range(2):
        run(
            engine,
            clone,
            "INSERT INTO author (name) VALUES ('new author')",
            "INSERT INTO book (author_id, title) VALUES (LAST_INSERT_ID(), 'new book')",
            "INSERT INTO review (book_id, stars) VALUES (LAST_INSERT_ID(), 1)",
            "UPDATE book SET price = price * 2, secret = 0 WHERE author_id = 2",
            # Changed primary keys: both the old and the new row must be restored.
            "UPDATE review SET id = 9999 WHERE id = 2",
            "UPDATE author SET name = 'renamed' WHERE id = 3",
            # Cascades to review without firing its triggers.
            "DELETE FROM book WHERE id = 1",
            "UPDATE tag SET code = 'python' WHERE code = 'py'",
            "DELETE FROM book_tag WHERE book_id = 2",
            "INSERT INTO note VALUES ('third')",
            "DELETE FROM note WHERE body = 'first' LIMIT 1",
            # A rolled back insert leaves only a used-up AUTO_INCREMENT value.
            "START TRANSACTION",
            "INSERT INTO audit (what) VALUES ('rolled back')",
            "INSERT INTO hits (page) VALUES ('/kept')",
            "ROLLBACK",
        )
        assert snapshot(engine, clone) != pristine
        if round_ == 0:
            # DDL elsewhere on the server: the reset must read the schema
            # signature, find it unchanged, and restore.
            other = engine.derive_name("other", persistent=False)
            run(
                engine,
                "",
                f"CREATE DATABASE {quote(other)}",
                f"DROP DATABASE {quote(other)}",
            )
        assert engine._reset_tracked(clone, template), f"round {round_}"
        assert_like_template(engine, template, clone)
    # Nothing changed: still restorable, and nothing to do.
    assert engine._reset_tracked(clone, template)
    assert_like_template(engine, template, clone)


def test_reset_restores_a_table_changed_by_many_rows(
    tracked: tuple[MySQLEngine, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, template, clone = tracked
    restored: list[tuple[set[str], dict[str, set[str]]]] = []
    restore_rows = MySQLEngine._restore_rows

    def spy(
        cur: Any,
        name: str,
        template: str,
        state: Any,
        whole: set[str],
        rows: dict[str, set[str]],
        clear: bool,
    ) -> None:
        restored.append((set(whole), {t: set(k) for t, k in rows.items()}))
        restore_rows(cur, name, template, state, whole, rows, clear)

    monkeypatch.setattr(MySQLEngine, "_restore_rows", staticmethod(spy))
    run(
        engine,
        clone,
        "DELETE FROM review",
        "INSERT INTO review (book_id, stars) SELECT id, 1 FROM book",
        "UPDATE bulk SET v = v + 1",
        "UPDATE bulk SET id = id + 10000 WHERE id > 1400",
    )
    assert engine._reset_tracked(clone, template)
    assert_like_template(engine, template, clone)
    # Rows by key where few changed, the whole table where most did.
    ((whole, rows),) = restored
    assert "bulk" in whole
    assert set(rows) == {"review"}


def test_reset_restores_a_truncated_non_transactional_table(
    tracked: tuple[MySQLEngine, str, str],
) -> None:
    # Such tables are restored whole every time, so TRUNCATE needs no
    # detecting there.
    engine, template, clone = tracked
    run(engine, clone, "TRUNCATE TABLE hits", "INSERT INTO hits (page) VALUES ('/new')")
    assert engine._reset_tracked(clone, template)
    assert_like_template(engine, template, clone)


TRUNCATE_AND_DDL = [
    "TRUNCATE TABLE note",
    "TRUNCATE TABLE review",
    "ALTER TABLE tag ADD COLUMN extra INT",
    "ALTER TABLE tag ALTER COLUMN label SET DEFAULT 'x'",
    "ALTER TABLE book MODIFY title VARCHAR(200) NOT NULL",
    "CREATE INDEX tag_label ON tag (label)",
    "ALTER TABLE review DROP FOREIGN KEY review_book",
    "CREATE TABLE extra (id INT PRIMARY KEY)",
    "DROP VIEW book_titles",
    "RENAME TABLE note TO memo",
    "OPTIMIZE TABLE tag",
]


@pytest.mark.parametrize("statement", TRUNCATE_AND_DDL)
def test_reset_refuses_after_truncate_or_ddl(
    tracked: tuple[MySQLEngine, str, str], statement: str
) -> None:
    engine, template, clone = tracked
    run(engine, clone, "INSERT INTO author (name) VALUES ('kept')", statement)
    tables = tuple(
        t
        for t in table_names(engine, clone)
        if not t.startswith("_testbed_") and t != "book_titles"
    )
    before = snapshot(engine, clone, tables)
    logged = run(engine, clone, "SELECT * FROM _testbed_dirty ORDER BY tbl, pk")
    assert not engine._reset_tracked(clone, template)
    # Nothing was touched.
    assert snapshot(engine, clone, tables) == before
    assert run(engine, clone, "SELECT * FROM _testbed_dirty ORDER BY tbl, pk") == logged
    assert run(engine, clone, "SELECT COUNT(*) FROM author WHERE name = 'kept'") == [
        (1,)
    ]


def test_reset_refuses_when_the_tracking_triggers_are_gone(
    tracked: tuple[MySQLEngine, str, str],
) -> None:
    engine, template, clone = tracked
    ((trigger,),) = run(
        engine,
        "",
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
        f"WHERE TRIGGER_SCHEMA = '{clone}' AND EVENT_OBJECT_TABLE = 'tag' AND EVENT_MANIPULATION = 'INSERT'",
    )
    run(
        engine,
        clone,
        f"DROP TRIGGER {quote(trigger)}",
        "INSERT INTO tag VALUES ('new', 'untracked')",
    )
    assert not engine._reset_tracked(clone, template)
    assert run(engine, clone, "SELECT label FROM tag WHERE code = 'new'") == [
        ("untracked",)
    ]


def test_reset_refuses_a_table_with_the_users_triggers(
    tracked: tuple[MySQLEngine, str, str],
) -> None:
    engine, template, clone = tracked
    # Restoring event would fire event_audit, which writes to audit.
    run(engine, clone, "INSERT INTO event (kind) VALUES ('test')")
    assert not engine._reset_tracked(clone, template)
    assert run(engine, clone, "SELECT COUNT(*) FROM event") == [(3,)]


def test_reset_of_an_untracked_database_refuses(mysql_engine: MySQLEngine) -> None:
    template = make_template(mysql_engine)
    clone = mysql_engine.derive_name("untracked", persistent=False)
    mysql_engine.clone(template, clone, "m")
    assert not mysql_engine._reset_tracked(clone, template)


def test_source_state_follows_writes_and_only_reads(mysql_engine: MySQLEngine) -> None:
    source = make_foreign_source(mysql_engine)
    settings = {**mysql_engine.settings, "NAME": source}
    first = mysql_engine.source_state(settings)
    assert mysql_engine.source_state(settings) == first  # reading changes nothing
    assert mysql_engine.read_mark(source) is None
    run(mysql_engine, source, "INSERT INTO tag VALUES ('new', 'A new tag')")
    assert mysql_engine.source_state(settings) != first
