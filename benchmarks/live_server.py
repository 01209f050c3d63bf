"""Live-server tests: testbed's shared-connection ``TestCase`` against Django's
``LiveServerTestCase``, which flushes after every test.

    python -m benchmarks.live_server                         # every engine, small and medium
    python -m benchmarks.live_server --engines postgresql,mysql --sizes medium --tests 30

Each (engine, data set) runs in a fresh process, on the benchmark project
(``benchproject``, 60 migrations, 25 models) with its data set loaded once
into the test database. Both classes run the same tests: each sends one
request to the live server, whose view reads the newest product and order
keys (2 indexed lookups), does 3 INSERTs and 1 SELECT, then checks from
the test that the server's row is there. The view's reads cost the same
whether the tables hold the data set or are empty, as most views' do, so
the ratio is the cost of isolation, not of scanning data Django's class no
longer has after its first flush. (Counting whole tables instead, as the
per-test benchmark does to check isolation, adds several ms per request at
the medium data set on MariaDB, to testbed's side only.) The newest keys
still prove isolation: a row left behind by an earlier test would show up
as a newer product key.

- ``testbed.testcases.LiveServerTestCase``: the server shares the test's
  transaction; each test rolls back (unchanged DATABASES);
- Django's ``LiveServerTestCase``: a ``TransactionTestCase``; each test
  ends with a flush (which throws the data set away after the first test,
  so it runs second).

A test's time is the wall time of ``TestCase.__call__`` (``_pre_setup`` to
``_post_teardown``); each class runs one warm-up test, reported apart. The
table (median ms per test and the ratio, all from one run) is printed and
written to ``benchmarks/results/live_server.md``, raw figures beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from benchmarks import isolation
from benchmarks._report import (
    engine_label,
    environment,
    ms,
    ratio,
    run_json_worker,
    split_choices,
    table,
)
from benchmarks.isolation import Timed, run_class, setup_django, versions

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENGINES = ("sqlite", "postgresql", "mysql")
SIZES = ("small", "medium")
SHARED = "testbed_shared"
FLUSH = "django_flush"
BAR = 5.0  # times faster, PostgreSQL and MariaDB, medium data set
WORKER_TIMEOUT = 1800


# --- the live server's side (this module is the URLconf) ----------------------


def newest_keys() -> tuple[int | None, int | None]:
    """The newest product and order keys (index lookups, whatever the table size)."""
    from benchproject.catalog.models import Product
    from benchproject.sales.models import Order

    def newest(model: Any) -> int | None:
        key = model.objects.order_by("-pk").values_list("pk", flat=True).first()
        return None if key is None else int(key)

    return newest(Product), newest(Order)


def live_work() -> tuple[int | None, int | None]:
    """What each request does: 2 indexed lookups, 3 INSERTs and 1 SELECT."""
    keys = newest_keys()
    isolation.write_and_read()
    return keys


def work_view(request: HttpRequest) -> HttpResponse:
    products, orders = live_work()
    return JsonResponse(
        {"products": products, "orders": orders, "serial": isolation._serial}
    )


urlpatterns = [path("work/", work_view)]


# --- one process: one engine, one data set -----------------------------------------


def make_class(name: str, base: type, tests: int, expected: Any) -> type:
    """A live-server class of ``tests + 1`` identical tests (the first a warm-up)."""
    from benchproject.catalog.models import Brand
    from django.test.utils import override_settings

    def test(self: Any) -> None:
        with urllib.request.urlopen(f"{self.live_server_url}/work/", timeout=120) as r:
            seen = json.loads(r.read())
        if expected is not None and (seen["products"], seen["orders"]) != expected:
            raise AssertionError(
                f"the server saw newest keys {seen}, expected {expected}"
            )
        # The test sees what the server wrote.
        if not Brand.objects.filter(name=f"Bench brand {seen['serial']}").exists():
            raise AssertionError("the server's row is not visible to the test")

    namespace: dict[str, Any] = {"durations": [], "testbed_durations": []}
    namespace.update({f"test_{i:04d}": test for i in range(tests + 1)})
    klass = type(name, (Timed, base), namespace)
    # benchproject has neither URLs nor a STATIC_URL, which the live server needs.
    settings = override_settings(ROOT_URLCONF=__name__, STATIC_URL="/static/")
    return settings(klass)  # type: ignore[no-any-return]


def run(engine: str, size: str, tests: int) -> dict[str, Any]:
    setup_django(engine)
    from benchproject import loaders
    from django.db import connections
    from django.test import LiveServerTestCase
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    import testbed
    from testbed import testcases

    out: dict[str, Any] = {
        "testbed": {"version": testbed.__version__},
        "engine": engine,
        "size": size,
        "tests": tests,
        "rows": sum(loaders.row_counts(size).values()),
        "strategies": {},
        "errors": {},
    }
    # A test database name of this process's own: other benchmark runs may
    # share the server.
    entry = connections.settings["default"]
    test_name = f"test_benchproject_live_{os.getpid()}"
    if entry["ENGINE"].endswith("sqlite3"):
        test_name = str(Path(entry["NAME"]).with_name(f"{test_name}.sqlite3"))
    entry["TEST"] = {**entry.get("TEST", {}), "NAME": test_name}
    setup_test_environment()
    old_config = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        out["versions"] = versions(engine)
        loaders.prepare(size, using="default")
        loaders.load(size, using="default")
        classes = [
            (SHARED, testcases.LiveServerTestCase, newest_keys()),
            # Second: its first flush throws the data set away.
            (FLUSH, LiveServerTestCase, None),
        ]
        for key, base, expected in classes:
            sys.stderr.write(f"  {key} ...\n")
            try:
                klass = make_class(f"Bench_{key}", base, tests, expected)
                found = run_class(klass)
                found.pop("testbed_median_ms", None)
                out["strategies"][key] = found
            except Exception:
                out["errors"][key] = traceback.format_exc()
    finally:
        connections.close_all()
        teardown_databases(old_config, verbosity=0)
        teardown_test_environment()
    return out


# --- the report ------------------------------------------------------------------


def median(result: dict[str, Any], key: str) -> float | None:
    found = result["strategies"].get(key)
    return found["median_ms"] if found else None


def size_section(size: str, results: list[dict[str, Any]]) -> str:
    first = results[0]
    headers = ["", *(engine_label(r) for r in results)]
    rows = []
    for key, label in (
        (FLUSH, "Django `LiveServerTestCase` (flush after each test)"),
        (
            SHARED,
            "testbed `testcases.LiveServerTestCase` (shared connection, rollback)",
        ),
    ):
        cells = []
        for r in results:
            value = median(r, key)
            cells.append(
                ("failed" if key in r["errors"] else "—")
                if value is None
                else ms(value)
            )
        rows.append([label, *cells])
    bar = []
    for r in results:
        flush, shared = median(r, FLUSH), median(r, SHARED)
        if flush is None or shared is None:
            bar.append("—")
            continue
        mark = ""
        if size == "medium" and r["engine"] in ("postgresql", "mysql"):
            mark = " ✓" if flush >= BAR * shared else " ✗"
        bar.append(f"{ratio(flush, shared)}{mark}")
    rows.append(
        [
            f"**testbed is faster by** (bar: ≥ {BAR:g}× on PostgreSQL and MariaDB, medium)",
            *bar,
        ]
    )
    for key, label in (
        (FLUSH, "first test of Django's class (flushes the data set)"),
        (SHARED, "first test of testbed's class"),
    ):
        rows.append(
            [
                label,
                *(
                    ms((r["strategies"].get(key) or {}).get("first_ms"))
                    for r in results
                ),
            ]
        )
    for key, label in ((FLUSH, "Django's"), (SHARED, "testbed's")):
        rows.append(
            [
                f"class set-up of {label} (starts the server)",
                *(
                    ms((r["strategies"].get(key) or {}).get("class_setup_ms"))
                    for r in results
                ),
            ]
        )
    return "\n".join(
        [
            f"### {size.capitalize()} data set: {first['rows']:,} rows, "
            f"{first['tests']} tests per class",
            "",
            "Median ms per test, from `_pre_setup` to `_post_teardown`.",
            "",
            table(headers, rows),
            "",
        ]
    )


def report(results: list[dict[str, Any]], command: str, seconds: float) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Live-server tests",
        "",
        f"`{command}`, {now}, {seconds / 60:.1f} minutes in all. "
        f"{environment(results)}.",
        "",
        "Each test sends one request to the live server (its view does 2 indexed "
        "lookups, 3 INSERTs and 1 SELECT, at the same cost with or without the "
        "data set) and checks from the test that the server's row is there and "
        "that it saw the data set's newest keys, so nothing an earlier test "
        "wrote. One warm-up test per class is left out of the median.",
        "",
    ]
    for size in SIZES:
        group = [r for r in results if r["size"] == size]
        if group:
            out.append(size_section(size, group))
    failures = [
        f"- {engine_label(r)}, {r['size']}, {key}: `{text.strip().splitlines()[-1][:300]}`"
        for r in results
        for key, text in r["errors"].items()
    ]
    if failures:
        out += ["Failures:", "", *failures, ""]
    return "\n".join(out).rstrip() + "\n"


def run_worker(engine: str, size: str, tests: int) -> dict[str, Any]:
    args = ["--worker", "--engines", engine, "--sizes", size, "--tests", str(tests)]
    result, failure = run_json_worker("benchmarks.live_server", args, WORKER_TIMEOUT)
    if result is not None:
        return dict(result)
    return {
        "engine": engine,
        "size": size,
        "tests": tests,
        "rows": 0,
        "testbed": {},
        "strategies": {},
        "errors": {"run": failure or "no result written"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.live_server", description=__doc__.splitlines()[0]
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
        "--output",
        type=Path,
        default=RESULTS_DIR / "live_server.md",
        help="where to write the table",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tests < 1:
        parser.error("--tests must be at least 1")
    if args.worker:
        result = run(args.engines[0], args.sizes[0], args.tests)
        args.output.write_text(json.dumps(result, indent=1))
        return 0

    command = "python -m benchmarks.live_server" + (
        " " + " ".join(sys.argv[1:]) if argv is None else ""
    )
    start = time.perf_counter()
    results = []
    for size in args.sizes:
        for engine in args.engines:
            sys.stderr.write(
                f"{engine}, {size} data set, {args.tests} tests per class\n"
            )
            sys.stderr.flush()
            t0 = time.perf_counter()
            results.append(run_worker(engine, size, args.tests))
            sys.stderr.write(f"  done in {time.perf_counter() - t0:.0f}s\n")
    text = report(results, command.strip(), time.perf_counter() - start)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    sys.stderr.write(f"written to {args.output}\n")
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
