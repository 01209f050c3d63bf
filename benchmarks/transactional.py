"""Unchanged transactional tests, with testbed installed and without.

    python -m benchmarks.transactional               # every engine, both data sets
    python -m benchmarks.transactional --quick       # small data set, a few tests
    python -m benchmarks.transactional --engines postgresql --sizes medium

Plain Django test classes, not written for testbed: ``TransactionTestCase``,
the same with ``serialized_rollback = True``, and ``LiveServerTestCase``,
each run once as Django runs it (flush after each test, JSON reload before
each serialized one) and once with testbed's transactional reset installed,
on one test database per (engine, data set), in a fresh process each. The
data set is loaded by a data migration, so it is part of the migrated state
Django serializes. Django's ``TestCase`` on the same database gives the
scale. A second part times a suite of only ``TestCase`` tests under
``manage.py test`` with Django's runner and with testbed's, alternating.

Tables (median milliseconds per test, ratios, all from this run) go to
``benchmarks/results/transactional.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks._report import (
    engine_label,
    environment,
    ms,
    ratio,
    run_json_worker,
    split_choices,
    table,
)
from benchmarks.isolation import (
    expected_counts,
    make_class,
    run_class,
    setup_django,
    versions,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = RESULTS_DIR.parent.parent
ENGINES = ("sqlite", "postgresql", "mysql")
SIZES = ("small", "medium")
WORKER_TIMEOUT = 3600

TESTCASE = "testcase"
TB_FLUSH, DJ_FLUSH = "testbed_ttc", "django_ttc"
TB_SERIAL, DJ_SERIAL = "testbed_serialized", "django_serialized"
TB_LIVE, DJ_LIVE = "testbed_live", "django_live"
# A TransactionTestCase whose flush does nothing: not isolated, the cost of
# Django's class itself (it reconnects for each test).
FLOOR = "no_flush"

# Bars, from the issue that asked for this.
TESTCASE_BAR = 3.0  # testbed's TransactionTestCase, at most this times TestCase
FLUSH_BAR = 10.0  # Django's flush ÷ testbed's, PostgreSQL and MariaDB, medium
SERIAL_BAR = 100.0  # Django's serialized_rollback ÷ testbed's, medium
LIVE_BAR = 5.0  # Django's LiveServerTestCase ÷ testbed's, PostgreSQL
SUITE_BAR = 1.02  # a TestCase-only suite: testbed ÷ Django


def _progress(message: str) -> None:
    sys.stderr.write(f"  {message}\n")
    sys.stderr.flush()


# --- one process: one engine, one data set -----------------------------------------


def run(engine: str, size: str, tests: int, slow_tests: int) -> dict[str, Any]:
    # The data migration loads this data set; a database name of its own
    # gives it a schema template of its own.
    os.environ["BENCHPROJECT_DATASET"] = size
    os.environ["BENCHPROJECT_DBNAME"] = f"bench_tx_{size}"
    setup_django(engine)
    from benchproject import loaders
    from django.db import connections
    from django.test import LiveServerTestCase, TestCase, TransactionTestCase
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    import testbed
    from benchmarks import live_server
    from testbed import _reset, _templates, _testdb, _transactional
    from testbed._stats import stats

    out: dict[str, Any] = {
        "testbed": {"version": testbed.__version__},
        "engine": engine,
        "size": size,
        "tests": tests,
        "slow_tests": slow_tests,
        "rows": sum(loaders.row_counts(size).values()),
        "tables": len(loaders.row_counts(size)),
        "one_off": {},
        "strategies": {},
        "errors": {},
    }
    # A test database of this process's own: other runs may share the server.
    entry = connections.settings["default"]
    test_name = f"test_bench_tx_{size}_{os.getpid()}"
    if entry["ENGINE"].endswith("sqlite3"):
        test_name = str(Path(entry["NAME"]).with_name(f"{test_name}.sqlite3"))
    entry["TEST"] = {**entry.get("TEST", {}), "NAME": test_name}

    setup_test_environment()
    _templates.start_session()
    _testdb.install()
    _transactional.install()
    start = time.perf_counter()
    with _testdb.creating():
        old_config = setup_databases(
            verbosity=0, interactive=False, serialized_aliases={"default"}
        )
    out["one_off"]["testbed_setup_ms"] = (time.perf_counter() - start) * 1000
    connection = connections["default"]
    baseline = connection._test_serialized_contents
    try:
        out["versions"] = versions(engine)
        if not isinstance(baseline, _reset.SerializedBaseline):
            raise RuntimeError(f"testbed serialized the database: {stats.notes}")
        # What Django's set-up does for serialized_rollback: a JSON dump.
        start = time.perf_counter()
        dump = connection.creation.serialize_db_to_string()
        out["one_off"]["django_serialize_ms"] = (time.perf_counter() - start) * 1000
        out["one_off"]["django_serialized_bytes"] = len(dump)

        installed = [True]

        def testbed_on() -> None:
            if not installed[0]:
                _transactional.install()
                installed[0] = True
            connection._test_serialized_contents = baseline

        def testbed_off() -> None:
            _reset.settle_all()
            if installed[0]:
                _transactional.uninstall()
                installed[0] = False
            connection._test_serialized_contents = dump

        expected = expected_counts(size)
        plan: list[tuple[str, Any, bool, Any]] = [
            (
                TESTCASE,
                lambda: make_class("DjTC", (TestCase,), tests, expected=expected),
                True,
                None,
            ),
            (
                TB_SERIAL,
                lambda: make_class(
                    "TbSerial",
                    (TransactionTestCase,),
                    tests,
                    serialized_rollback=True,
                    expected=expected,
                ),
                True,
                None,
            ),
            (
                DJ_SERIAL,
                # Each of its tests reloads the whole dump: no warm-up.
                lambda: make_class(
                    "DjSerial",
                    (TransactionTestCase,),
                    slow_tests - 1,
                    serialized_rollback=True,
                    expected=expected,
                ),
                False,
                "all",
            ),
            (
                TB_FLUSH,
                lambda: make_class("TbTTC", (TransactionTestCase,), tests),
                True,
                None,
            ),
            (
                DJ_FLUSH,
                lambda: make_class("DjTTC", (TransactionTestCase,), tests),
                False,
                None,
            ),
            (
                FLOOR,
                lambda: make_class(
                    "NoFlush",
                    (TransactionTestCase,),
                    tests,
                    _fixture_teardown=lambda self: None,
                ),
                False,
                None,
            ),
            (
                TB_LIVE,
                lambda: live_server.make_class(
                    "TbLive", LiveServerTestCase, tests, None
                ),
                True,
                None,
            ),
            (
                DJ_LIVE,
                lambda: live_server.make_class(
                    "DjLive", LiveServerTestCase, tests, None
                ),
                False,
                None,
            ),
        ]
        for key, build, with_testbed, measured in plan:
            (testbed_on if with_testbed else testbed_off)()
            _progress(f"{key} ...")
            before = (
                stats.resets_rows,
                stats.resets_flushed,
                stats.serialized_restores,
            )
            try:
                found = run_class(build(), warmup=measured != "all")
                found["resets"] = stats.resets_rows - before[0]
                found["flushed"] = stats.resets_flushed - before[1]
                found["serialized_loads"] = stats.serialized_restores - before[2]
                out["strategies"][key] = found
            except Exception:
                out["errors"][key] = traceback.format_exc()
                _progress(f"{key} FAILED")
        testbed_on()
        out["testbed"]["summary"] = stats.summary()
        out["testbed"]["notes"] = stats.notes
    finally:
        connections.close_all()
        teardown_databases(old_config, verbosity=0)
        _transactional.uninstall()
        _testdb.uninstall()
        _testdb.release_all()
        teardown_test_environment()
    return out


# --- a suite of TestCase tests, whole runs ------------------------------------------

_SUITE = """
from decimal import Decimal

from django.test import TestCase

from benchproject.catalog.models import Brand, Category, Product


def work(self, i):
    category = Category.objects.create(name=f"c{i}", slug=f"c-{i}")
    brand = Brand.objects.create(name=f"b{i}")
    Product.objects.create(
        sku=f"S{i}", name=f"p{i}", category=category, brand=brand, price=Decimal("1")
    )
    self.assertEqual(Product.objects.count(), 1)

"""


def _suite_module(directory: Path, classes: int, per_class: int) -> str:
    lines = [_SUITE]
    for c in range(classes):
        lines.append(f"class Suite{c}(TestCase):")
        for t in range(per_class):
            lines.append(f"    def test_{t}(self):\n        work(self, {t})\n")
    package = directory / "bench_tc_suite"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tests.py").write_text("\n".join(lines))
    return "bench_tc_suite"


def run_suite(engine: str, runs: int, classes: int, per_class: int) -> dict[str, Any]:
    """``manage.py test`` of a TestCase-only suite, Django's runner and
    testbed's alternating, the template warm; seconds."""
    found: dict[str, Any] = {
        "engine": engine,
        "tests": classes * per_class,
        "runs": runs,
    }
    with tempfile.TemporaryDirectory() as tmp:
        label = _suite_module(Path(tmp), classes, per_class)
        env = {
            **os.environ,
            "BENCHPROJECT_ENGINE": engine,
            "BENCHPROJECT_DBNAME": f"bench_tc_{os.getpid()}",
            "DJANGO_SETTINGS_MODULE": "benchproject.settings",
            "PYTHONPATH": os.pathsep.join(
                [tmp, str(ROOT / "benchmarks"), str(ROOT / "src")]
            ),
        }
        runners = {
            "django": "django.test.runner.DiscoverRunner",
            "testbed": "testbed.runner.TestbedRunner",
        }

        def once(runner: str) -> tuple[float, float]:
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "django", "test", "--noinput", label],
                env={**env, "BENCHPROJECT_RUNNER": runners[runner]},
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=900,
            )
            whole = time.perf_counter() - start
            match = re.search(r"Ran (\d+) tests in ([\d.]+)s", done.stderr)
            if done.returncode or match is None:
                raise RuntimeError(done.stderr[-2000:])
            return whole, float(match.group(2))

        once("testbed")  # builds the schema template: both runs start warm
        times: dict[str, list[tuple[float, float]]] = {"django": [], "testbed": []}
        for _ in range(runs):
            for runner in ("django", "testbed"):
                times[runner].append(once(runner))
        for runner, pairs in times.items():
            found[runner] = {
                "whole_s": statistics.median(p[0] for p in pairs),
                "tests_s": statistics.median(p[1] for p in pairs),
            }
    return found


# --- the report ------------------------------------------------------------------


def median(result: dict[str, Any], key: str) -> float | None:
    found = result["strategies"].get(key)
    return found["median_ms"] if found else None


def _cell(result: dict[str, Any], key: str) -> str:
    value = median(result, key)
    if value is None:
        return "failed" if key in result["errors"] else "—"
    return ms(value)


def _bar(
    value: float | None, base: float | None, bar: float, applies: bool, *, above: bool
) -> str:
    if value is None or base is None:
        return "—"
    text = ratio(value, base)
    if not applies:
        return text
    met = value >= bar * base if above else value <= bar * base
    return f"{text} {'✓' if met else '✗'}"


def size_section(size: str, results: list[dict[str, Any]]) -> str:
    first = results[0]
    headers = ["", *(engine_label(r) for r in results)]
    rows: list[list[str]] = []
    for key, label in (
        (TESTCASE, "Django `TestCase` (savepoint rollback)"),
        (DJ_FLUSH, "`TransactionTestCase`, Django (flush)"),
        (TB_FLUSH, "`TransactionTestCase`, testbed installed"),
        (
            FLOOR,
            "`TransactionTestCase` with no flush at all (not isolated: the cost "
            "of Django's class itself, which reconnects for each test)",
        ),
        (DJ_SERIAL, "`serialized_rollback = True`, Django (reload the JSON dump)"),
        (TB_SERIAL, "`serialized_rollback = True`, testbed installed"),
        (DJ_LIVE, "`LiveServerTestCase`, Django (flush)"),
        (TB_LIVE, "`LiveServerTestCase`, testbed installed"),
    ):
        rows.append([label, *(_cell(r, key) for r in results)])
    server = ("postgresql", "mysql")
    rows.append(
        [
            f"**testbed `TransactionTestCase` ÷ `TestCase`** (bar: ≤ {TESTCASE_BAR:g}×)",
            *(
                _bar(
                    median(r, TB_FLUSH),
                    median(r, TESTCASE),
                    TESTCASE_BAR,
                    True,
                    above=False,
                )
                for r in results
            ),
        ]
    )
    rows.append(
        [
            f"**Django's flush ÷ testbed's reset** (bar: ≥ {FLUSH_BAR:g}× on "
            "PostgreSQL and MariaDB, medium)",
            *(
                _bar(
                    median(r, DJ_FLUSH),
                    median(r, TB_FLUSH),
                    FLUSH_BAR,
                    size == "medium" and r["engine"] in server,
                    above=True,
                )
                for r in results
            ),
        ]
    )
    rows.append(
        [
            f"**Django's serialized_rollback ÷ testbed's** (bar: ≥ {SERIAL_BAR:g}×, medium)",
            *(
                _bar(
                    median(r, DJ_SERIAL),
                    median(r, TB_SERIAL),
                    SERIAL_BAR,
                    size == "medium",
                    above=True,
                )
                for r in results
            ),
        ]
    )
    rows.append(
        [
            f"**Django's LiveServerTestCase ÷ testbed's** (bar: ≥ {LIVE_BAR:g}× on PostgreSQL)",
            *(
                _bar(
                    median(r, DJ_LIVE),
                    median(r, TB_LIVE),
                    LIVE_BAR,
                    r["engine"] == "postgresql",
                    above=True,
                )
                for r in results
            ),
        ]
    )
    one_off = [
        (
            "Django's set-up: serialize the database for serialized_rollback",
            lambda r: ms(r["one_off"].get("django_serialize_ms")),
        ),
        (
            "testbed's set-up: the test database (its serialization skipped)",
            lambda r: ms(r["one_off"].get("testbed_setup_ms")),
        ),
        (
            "tests of Django's serialized class (each reloads the dump)",
            lambda r: str(r.get("slow_tests", "—")),
        ),
    ]
    extra = [[label, *(f(r) for r in results)] for label, f in one_off]
    return "\n".join(
        [
            f"### {size.capitalize()} data set: {first['rows']:,} rows in "
            f"{first['tables']} tables, loaded by a data migration; {first['tests']} "
            "tests per class",
            "",
            "Median ms per test, from `_pre_setup` to `_post_teardown`, the "
            "first test of each class left out (but for Django's serialized class, "
            "whose first test is counted with the class set-up that loads its data).",
            "",
            table(headers, rows),
            "",
            "One-off costs, ms:",
            "",
            table(["", *(engine_label(r) for r in results)], extra),
            "",
        ]
    )


def suite_section(suites: list[dict[str, Any]], labels: dict[str, str]) -> str:
    rows = []
    for key, label in (
        ("tests_s", 'running the tests (Django\'s "Ran N tests in")'),
        ("whole_s", "the whole command, database set-up included"),
    ):
        cells = []
        for s in suites:
            if "error" in s:
                cells.append("failed")
                continue
            django, tb = s["django"][key], s["testbed"][key]
            mark = ""
            if key == "tests_s":
                mark = " ✓" if tb <= SUITE_BAR * django else " ✗"
            cells.append(f"{django:.2f} → {tb:.2f} ({ratio(tb, django)}{mark})")
        rows.append([label, *cells])
    first = next((s for s in suites if "tests" in s), {"tests": 0, "runs": 0})
    return "\n".join(
        [
            f"### A suite of only `TestCase` tests ({first['tests']} tests), "
            f"`manage.py test`, medians of {first['runs']} alternating runs",
            "",
            f"Seconds, Django's runner → testbed's (template warm); bar: testbed "
            f"≤ {SUITE_BAR:g}× on the tests themselves.",
            "",
            table(["", *(labels[s["engine"]] for s in suites)], rows),
            "",
        ]
    )


def report(
    results: list[dict[str, Any]],
    suites: list[dict[str, Any]],
    command: str,
    seconds: float,
) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Transactional tests, unchanged",
        "",
        f"`{command}`, {now}, {seconds / 60:.1f} minutes in all. {environment(results)}.",
        "",
        "Plain Django classes, not written for testbed, on one test database: "
        "each test does 2 COUNTs, 3 INSERTs and 1 SELECT (the live-server "
        'tests send one request that does the same). "testbed installed" is '
        "`TestbedRunner` or the pytest plugin: a `TransactionTestCase` ends by "
        "emptying only the tables that hold rows, keeping what post_migrate "
        "made, and `serialized_rollback` loads only tables that differ from "
        "the migrated state, from the schema template's baseline.",
        "",
    ]
    for size in SIZES:
        group = [r for r in results if r["size"] == size]
        if group:
            out.append(size_section(size, group))
    if suites:
        labels = {r["engine"]: engine_label(r) for r in results}
        for s in suites:
            labels.setdefault(s["engine"], s["engine"])
        out.append(suite_section(suites, labels))
    failures = [
        f"- {engine_label(r)}, {r['size']}, {key}: `{text.strip().splitlines()[-1][:300]}`"
        for r in results
        for key, text in r["errors"].items()
    ] + [f"- {s['engine']} suite: `{s['error'][:300]}`" for s in suites if "error" in s]
    if failures:
        out += ["Failures:", "", *failures, ""]
    return "\n".join(out).rstrip() + "\n"


def run_worker(engine: str, size: str, tests: int, slow_tests: int) -> dict[str, Any]:
    args = [
        "--worker",
        "--engines",
        engine,
        "--sizes",
        size,
        "--tests",
        str(tests),
        "--slow-tests",
        str(slow_tests),
    ]
    result, failure = run_json_worker("benchmarks.transactional", args, WORKER_TIMEOUT)
    if result is not None:
        return dict(result)
    return {
        "engine": engine,
        "size": size,
        "tests": tests,
        "rows": 0,
        "tables": 0,
        "testbed": {},
        "one_off": {},
        "strategies": {},
        "errors": {"run": failure or "no result written"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.transactional", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--engines",
        type=lambda v: split_choices(v, ENGINES),
        default=list(ENGINES),
        help=f"comma-separated, from {', '.join(ENGINES)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=lambda v: split_choices(v, SIZES),
        default=list(SIZES),
        help="comma-separated data sets, from small, medium (default: both)",
    )
    parser.add_argument(
        "--tests", type=int, default=20, help="measured tests per class (default 20)"
    )
    parser.add_argument(
        "--slow-tests",
        type=int,
        default=None,
        help="tests of Django's serialized class (default: 5 small, 1 medium)",
    )
    parser.add_argument(
        "--suite-runs", type=int, default=5, help="runs of the TestCase suite each way"
    )
    parser.add_argument("--quick", action="store_true", help="a few tests, small only")
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "transactional.md",
        help="where to write the table",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.tests, args.suite_runs = ["small"], 3, 1
    if args.worker:
        result = run(args.engines[0], args.sizes[0], args.tests, args.slow_tests or 1)
        args.output.write_text(json.dumps(result, indent=1))
        return 0

    command = "python -m benchmarks.transactional" + (
        " " + " ".join(sys.argv[1:]) if argv is None else ""
    )
    start = time.perf_counter()
    results = []
    for size in args.sizes:
        slow = args.slow_tests or (1 if size == "medium" else min(5, args.tests))
        for engine in args.engines:
            sys.stderr.write(
                f"{engine}, {size} data set, {args.tests} tests per class\n"
            )
            t0 = time.perf_counter()
            results.append(run_worker(engine, size, args.tests, slow))
            sys.stderr.write(f"  done in {time.perf_counter() - t0:.0f}s\n")
    suites = []
    for engine in args.engines:
        sys.stderr.write(f"{engine}, TestCase suite\n")
        try:
            suites.append(
                run_suite(engine, args.suite_runs, 5, 4 if args.quick else 60)
            )
        except Exception as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            suites.append({"engine": engine, "error": lines[-1]})
    text = report(results, suites, command.strip(), time.perf_counter() - start)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(
        json.dumps({"results": results, "suites": suites}, indent=1)
    )
    sys.stderr.write(f"written to {args.output}\n")
    failed = any(r["errors"] for r in results) or any("error" in s for s in suites)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
