"""MariaDB/MySQL: ways to clone a database, and the cost of per-test restore.

    python -m benchmarks.mysql_clone                  # small and medium, 5 runs each
    python -m benchmarks.mysql_clone --runs 9 --sizes medium

Needs the server of the ``mysql`` alias in ``tests/settings.py`` (the
``TESTBED_MYSQL_*`` environment variables). Builds its own data sets: 25
tables (5 parents, 15 children with one or two foreign keys, 5 many-to-many
link tables with a unique pair), each with an indexed name and date, a
view and a trigger; "small" is about 1,000 rows, "medium" about 100,000.

Clone methods, each timed from nothing to a complete copy (the target is
dropped, untimed, between runs):

- ``dump | load``: Django's ``_clone_db``, ``mysqldump --routines --events``
  piped into ``mysql``;
- ``SQL, N conn.``: the engine's copy: ``SHOW CREATE TABLE`` replayed with
  FOREIGN_KEY_CHECKS=0, then ``INSERT INTO clone.t SELECT ... FROM
  template.t``, over N connections at once (N=1 is sequential);
- ``unique_checks=0``: the same with unique_checks off (MariaDB then
  bulk-loads an empty table and sorts its indexes), for every table or
  for big ones only;
- ``indexes and FKs after``: secondary indexes and foreign keys left out
  of CREATE TABLE and added with one ALTER per table after the copy;
- ``LIKE + INSERT``: ``CREATE TABLE ... LIKE`` (loses foreign keys; a
  reference point only);
- ``engine.clone()``: the engine's default.

Restore: ``prepare_tracking`` on a fresh clone, and ``_reset_tracked``
after a "test" inserts 3 rows into each of 2 tables, after one that
changes nothing, after a test when another session ran DDL elsewhere on
the server (which makes the reset reread the schema signature), and after
one that deleted every row of a table; beside them, the same inserts rolled
back (Django's TestCase), and restoring one table whole with DELETE or
TRUNCATE.

Prints markdown tables of median milliseconds.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"small": 1_000, "medium": 100_000}
PREFIX = "tb_bench_mysql"


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()


def make_engine() -> Any:
    from django.db import connections

    from testbed._engines import engine_for

    settings = dict(connections.settings["mysql"])
    settings["NAME"] = PREFIX
    settings["TEST"] = {**settings["TEST"], "NAME": PREFIX}
    return engine_for(settings, "mysql")


def build_dataset(engine: Any, name: str, total_rows: int) -> None:
    from testbed._engines.mysql.connection import quote

    rng = random.Random(42)
    engine.create_empty(name, "bench-template")
    conn = engine.connect(name)
    per_table = max(1, total_rows // 25)
    tables: list[tuple[str, list[str]]] = [(f"parent_{i}", []) for i in range(5)]
    tables += [
        (f"child_{i}", [f"parent_{i % 5}"] + ([f"child_{i - 1}"] if i else []))
        for i in range(15)
    ]
    tables += [(f"link_{i}", [f"parent_{i}", f"child_{i}"]) for i in range(5)]
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION foreign_key_checks = 0")
            for table, parents in tables:
                columns = [
                    "id BIGINT AUTO_INCREMENT PRIMARY KEY",
                    "name VARCHAR(100) NOT NULL",
                    "created DATETIME(6) NOT NULL",
                    "amount DECIMAL(10,2) NOT NULL",
                    "flag TINYINT(1) NOT NULL",
                    "body LONGTEXT NOT NULL",
                    "KEY (name)",
                    "KEY (created)",
                ]
                for j, parent in enumerate(parents):
                    columns.append(f"f{j}_id BIGINT NOT NULL")
                    columns.append(
                        f"CONSTRAINT {table}_f{j} FOREIGN KEY (f{j}_id) REFERENCES {parent} (id)"
                    )
                if table.startswith("link"):
                    columns.append("UNIQUE KEY (f0_id, f1_id)")
                cur.execute(
                    f"CREATE TABLE {quote(table)} ({', '.join(columns)}) ENGINE=InnoDB"
                )
                rows = []
                for k in range(per_table):
                    row: list[Any] = [
                        f"name {k} {rng.random():.6f}",
                        "2024-01-01 00:00:00",
                        k * 1.5,
                        k % 2,
                        "x" * rng.randint(10, 60),
                    ]
                    if table.startswith("link"):
                        row += [k % per_table + 1, k + 1]
                    else:
                        row += [rng.randint(1, per_table) for _ in parents]
                    rows.append(row)
                fk_columns = "".join(f", f{j}_id" for j in range(len(parents)))
                placeholders = ", ".join(["%s"] * (5 + len(parents)))
                for start in range(0, len(rows), 1000):
                    cur.executemany(
                        f"INSERT INTO {quote(table)} (name, created, amount, flag, body{fk_columns}) "
                        f"VALUES ({placeholders})",
                        rows[start : start + 1000],
                    )
                # Counters above max(id) + 1, as after deletes: clones must keep them.
                cur.execute(
                    f"ALTER TABLE {quote(table)} AUTO_INCREMENT = {per_table + 10}"
                )
            cur.execute(
                "CREATE VIEW child_names AS SELECT c.id, p.name FROM child_0 c JOIN parent_0 p ON p.id = c.f0_id"
            )
            cur.execute(
                "CREATE TRIGGER parent_0_name BEFORE INSERT ON parent_0 FOR EACH ROW SET NEW.name = TRIM(NEW.name)"
            )
    finally:
        conn.close()
    engine.seal(name, "bench-template")


def dump_load(engine: Any, template: str, target: str) -> None:
    """Django's ``DatabaseCreation._clone_db``, after creating the target."""
    from django.db.backends.mysql.client import DatabaseClient

    engine.create_empty(target, "bench")
    args, env = DatabaseClient.settings_to_cmd_args_env(
        engine.settings_for(template), []
    )
    dump_cmd = ["mysqldump", *args[1:-1], "--routines", "--events", template]
    load_cmd = [*args[:-1], target]
    full_env = {**os.environ, **env} if env else None
    with subprocess.Popen(dump_cmd, stdout=subprocess.PIPE, env=full_env) as dump:
        assert dump.stdout is not None
        with subprocess.Popen(load_cmd, stdin=dump.stdout, env=full_env) as load:
            dump.stdout.close()
    if dump.returncode or load.returncode:
        raise RuntimeError(f"dump exited {dump.returncode}, load {load.returncode}")


def sql_copy(
    workers: int, unique_checks: bool | None = True
) -> Callable[[Any, str, str], None]:
    def run(engine: Any, template: str, target: str) -> None:
        engine._copy_database(
            template, target, "bench", workers=workers, unique_checks=unique_checks
        )

    return run


def indexes_after(workers: int) -> Callable[[Any, str, str], None]:
    """Tables created with their primary key only, indexes and foreign keys added after the copy."""

    def run(engine: Any, template: str, target: str) -> None:
        from testbed._engines.mysql.connection import quote
        from testbed._engines.mysql.schema import read_schema

        conn = engine._open()
        try:
            with conn.cursor() as cur:
                schema = read_schema(cur, template)
                engine._create_database(
                    cur,
                    target,
                    f"CHARACTER SET {schema.charset} COLLATE {schema.collation}",
                )
                engine._write_mark(cur, target, "bench", create=True)
            later: dict[str, list[str]] = {}
            for table in schema.tables:
                # SHOW CREATE TABLE puts one definition per line.
                lines = table.create.split("\n")
                keep, deferred = [], []
                for line in lines[1:-1]:
                    item = line.strip().rstrip(",")
                    if item.startswith(("KEY ", "UNIQUE KEY ", "CONSTRAINT ")):
                        deferred.append(item)
                    else:
                        keep.append("  " + item)
                table.create = "\n".join([lines[0], ",\n".join(keep), lines[-1]])
                later[table.name] = deferred
            engine._copy_tables(conn, template, target, schema.tables, workers, None)

            def add(table: str, items: list[str], connection: Any) -> None:
                with connection.cursor() as cur:
                    adds = ", ".join(f"ADD {item}" for item in items)
                    cur.execute(f"ALTER TABLE {quote(target)}.{quote(table)} {adds}")

            pending = [(t, items) for t, items in later.items() if items]
            lock = threading.Lock()

            def worker() -> None:
                connection = engine._open()
                try:
                    while True:
                        with lock:
                            if not pending:
                                return
                            table, items = pending.pop()
                        add(table, items, connection)
                finally:
                    connection.close()

            threads = [threading.Thread(target=worker) for _ in range(workers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            with conn.cursor() as cur:
                engine._copy_objects(cur, template, target, schema)
        finally:
            conn.close()

    return run


def like_insert(engine: Any, template: str, target: str) -> None:
    from testbed._engines.mysql.connection import quote
    from testbed._engines.mysql.schema import user_tables

    engine.create_empty(target, "bench")
    conn = engine._open()
    try:
        with conn.cursor() as cur:
            tables, _ = user_tables(cur, template)
            for table in tables:
                t, s = (
                    f"{quote(target)}.{quote(table.name)}",
                    f"{quote(template)}.{quote(table.name)}",
                )
                cur.execute(f"CREATE TABLE {t} LIKE {s}")
                cur.execute(
                    f"INSERT INTO {t} ({table.column_list}) SELECT {table.column_list} FROM {s}"
                )
    finally:
        conn.close()


def engine_clone(engine: Any, template: str, target: str) -> None:
    engine.clone(template, target, "bench")


METHODS: list[tuple[str, Callable[[Any, str, str], None]]] = [
    ("(a) `mysqldump \\| mysql` (Django)", dump_load),
    ("(b) SQL copy, 1 connection", sql_copy(1)),
    ("(c) SQL copy, 2 connections", sql_copy(2)),
    ("(c) SQL copy, 3 connections", sql_copy(3)),
    ("(c) SQL copy, 4 connections", sql_copy(4)),
    ("(d) SQL copy, 1 connection, unique_checks=0", sql_copy(1, unique_checks=False)),
    ("(d) SQL copy, 3 connections, unique_checks=0", sql_copy(3, unique_checks=False)),
    (
        "(d) SQL copy, 3 connections, unique_checks=0 for tables >= 512 kB",
        sql_copy(3, unique_checks=None),
    ),
    ("(d) SQL copy, 3 connections, indexes and FKs after", indexes_after(3)),
    ("(ref) `CREATE TABLE LIKE` + INSERT (loses FKs)", like_insert),
    ("`engine.clone()` (the default)", engine_clone),
]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def bench_clones(engine: Any, template: str, runs: int) -> dict[str, float]:
    target = f"{PREFIX}_clone"
    samples: dict[str, list[float]] = {label: [] for label, _ in METHODS}
    # Interleaved, so drift on a noisy machine spreads over every method.
    for _ in range(runs):
        for label, method in METHODS:
            engine._drop(target)
            samples[label].append(
                timed(functools.partial(method, engine, template, target))
            )
    engine._drop(target)
    return {label: statistics.median(values) for label, values in samples.items()}


def bench_restore(engine: Any, template: str, runs: int) -> dict[str, float]:
    from testbed._engines.mysql.connection import quote

    clone = f"{PREFIX}_tracked"
    other = f"{PREFIX}_other"
    untracked = f"{PREFIX}_untracked"
    engine._drop(clone)
    prepare: list[float] = []
    for _ in range(max(3, runs // 3)):
        engine._drop(clone)
        engine.clone(template, clone, "bench")
        prepare.append(timed(lambda: engine.prepare_tracking(clone, template)))
    engine._drop(untracked)
    engine.clone(template, untracked, "bench")
    conn = engine.connect(clone)
    figures: dict[str, list[float]] = {
        key: []
        for key in (
            "insert",
            "test_reset",
            "rollback",
            "noop",
            "other_ddl",
            "delete_all",
            "whole_delete",
            "whole_truncate",
        )
    }

    def fake_test() -> None:
        with conn.cursor() as cur:
            for _ in range(3):
                cur.execute(
                    "INSERT INTO child_3 (name, created, amount, flag, body, f0_id, f1_id) "
                    "VALUES ('new', NOW(6), 1, 1, 'b', 1, 1)"
                )
                cur.execute(
                    "INSERT INTO parent_1 (name, created, amount, flag, body) VALUES ('new', NOW(6), 1, 1, 'b')"
                )

    def reset() -> None:
        if not engine._reset_tracked(clone, template):
            raise RuntimeError("reset refused")

    def test_then_reset() -> None:
        fake_test()
        reset()

    def rolled_back_test() -> None:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION")
            fake_test()
            cur.execute("ROLLBACK")

    def whole(truncate: bool) -> None:
        table = f"{quote(untracked)}.`link_3`"
        with engine._admin() as cur:
            if truncate:
                cur.execute(f"TRUNCATE TABLE {table}")
            cur.execute("START TRANSACTION")
            if not truncate:
                cur.execute(f"DELETE FROM {table}")
            cur.execute(f"INSERT INTO {table} SELECT * FROM {quote(template)}.`link_3`")
            cur.execute("COMMIT")

    try:
        reset()
        for _ in range(runs * 4):
            fake_test()
            figures["insert"].append(timed(reset))
            figures["noop"].append(timed(reset))
            figures["test_reset"].append(timed(test_then_reset))
            # What Django's TestCase does instead: a rollback, which leaves
            # AUTO_INCREMENT counters moved on.
            figures["rollback"].append(timed(rolled_back_test))
            reset()
            fake_test()
            with engine._admin() as cur:
                cur.execute(f"CREATE DATABASE {quote(other)}")
                cur.execute(f"DROP DATABASE {quote(other)}")
            figures["other_ddl"].append(timed(reset))
        for _ in range(runs):
            with conn.cursor() as cur:
                cur.execute("DELETE FROM link_2")
            figures["delete_all"].append(timed(reset))
            figures["whole_delete"].append(timed(lambda: whole(False)))
            figures["whole_truncate"].append(timed(lambda: whole(True)))
    finally:
        conn.close()
        engine._drop(clone)
        engine._drop(untracked)
    result = {key: statistics.median(values) for key, values in figures.items()}
    result["prepare"] = statistics.median(prepare)
    return result


def verdict(clones: dict[str, dict[str, float]], sizes: list[str]) -> str:
    """The fastest method that copies everything (foreign keys included), per data set."""
    from testbed._engines.mysql.copying import MySQLCopying

    found = []
    for size in sizes:
        correct = {
            label: t
            for label, t in clones[size].items()
            if not label.startswith("(ref)") and not label.startswith("`engine")
        }
        best = min(correct, key=correct.__getitem__)
        dump = next(t for label, t in correct.items() if label.startswith("(a)"))
        found.append(
            f"on the {size} data set, {best} ({correct[best]:,.0f} ms; Django's dump "
            f"and load {dump:,.0f} ms, {dump / correct[best]:.1f}× as long)"
        )
    return (
        "Fastest correct method: "
        + "; ".join(found)
        + f". testbed's `engine.clone()` is (c)/(d): the SQL copy over "
        f"{MySQLCopying.copy_workers} connections, unique_checks off for tables of "
        "512 kB or more."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mysql_clone",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="small,medium")
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "mysql_clone.md",
        help="where to write the tables",
    )
    args = parser.parse_args(argv)
    setup_django()
    engine = make_engine()
    for info in engine.list_databases(PREFIX):
        engine._drop(info.name)
    sizes = [s for s in args.sizes.split(",") if s]
    clones: dict[str, dict[str, float]] = {}
    restores: dict[str, dict[str, float]] = {}
    megabytes: dict[str, float] = {}
    try:
        for size in sizes:
            template = f"{PREFIX}_{size}"
            build_dataset(engine, template, SIZES[size])
            (info,) = engine.list_databases(template)
            megabytes[size] = (info.size_bytes or 0) / 1e6
            clones[size] = bench_clones(engine, template, args.runs)
            restores[size] = bench_restore(engine, template, args.runs)
            engine._drop(template)
    finally:
        for info in engine.list_databases(PREFIX):
            engine._drop(info.name)
        version = engine.server_version()
        engine.close()
    out = [
        "## Engine choice: cloning a MariaDB/MySQL database",
        "",
        f"`python -m benchmarks.mysql_clone`: server {version}, {os.cpu_count()} "
        f"CPUs, {args.runs} runs each, median ms. 25 tables with foreign keys, "
        "indexes, a view and a trigger; each method from nothing to a complete copy.",
        "",
    ]
    sizes_label = " | ".join(
        f"{s} ({SIZES[s]:,} rows, {megabytes[s]:.0f} MB)" for s in sizes
    )
    out.append(f"| clone method | {sizes_label} |")
    out.append("|---|" + "---:|" * len(sizes))
    for label, _ in METHODS:
        out.append(
            f"| {label} | "
            + " | ".join(f"{clones[s][label]:,.0f}" for s in sizes)
            + " |"
        )
    out += ["", f"**{verdict(clones, sizes)}**", ""]
    out.append("| per-test restore | " + " | ".join(sizes) + " |")
    out.append("|---|" + "---:|" * len(sizes))
    for key, label in (
        ("prepare", "`prepare_tracking` (once per clone, 25 tables)"),
        ("insert", "reset after 3 inserts into each of 2 tables"),
        ("test_reset", "those inserts + reset (TransactionTestCase with testbed)"),
        ("rollback", "those inserts in a transaction + ROLLBACK (what TestCase does)"),
        ("noop", "reset after a test that changed nothing"),
        ("other_ddl", "reset after 3+3 inserts, DDL elsewhere on the server meanwhile"),
        ("delete_all", "reset after deleting every row of one table"),
        (
            "whole_delete",
            "one table whole: DELETE + INSERT ... SELECT, one transaction",
        ),
        ("whole_truncate", "one table whole: TRUNCATE + INSERT ... SELECT"),
    ):
        out.append(
            f"| {label} | "
            + " | ".join(f"{restores[s][key]:,.1f}" for s in sizes)
            + " |"
        )
    text = "\n".join(out) + "\n"
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
