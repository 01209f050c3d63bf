"""Per-test isolation benchmarks: Django's strategies and testbed's, side by side.

    python -m benchmarks.per_test             # every engine, small and medium
    python -m benchmarks.per_test --engines postgresql --sizes medium --tests 30
    python -m benchmarks.per_test --quick     # 5 tests per strategy, small only

Each (engine, data set) runs in a fresh process (``benchmarks.isolation``),
so Django's settings are clean. The tables (median milliseconds per test,
with ratios, all from this run) are printed and written to
``benchmarks/results/per_test.md``; the raw figures to ``per_test.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
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
    FLUSH,
    FLUSH_RELOAD,
    TESTBED_TC,
    TESTBED_TTC,
    TESTCASE,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENGINES = ("sqlite", "sqlite-memory", "postgresql", "mysql")
DEFAULT_ENGINES = ("sqlite", "postgresql", "mysql")
SIZES = ("small", "medium")
DEFAULT_TESTS = 20
QUICK_TESTS = 5
WORKER_TIMEOUT = 900

ROWS = (
    (TESTCASE, "Django `TestCase` (savepoint rollback)"),
    (FLUSH, "`TransactionTestCase`, flush (the data set is lost after the first test)"),
    (FLUSH_RELOAD, "`TransactionTestCase`, flush, then reload the data set in bulk"),
    (TESTBED_TTC, "testbed `TemplateDBTransactionTestCase`, `reload_after_test=True`"),
    (TESTBED_TC, "testbed `TemplateDBTestCase` (rollback on a template clone)"),
)


# --- formatting -------------------------------------------------------------------


def median(result: dict[str, Any], key: str) -> float | None:
    found = result["strategies"].get(key)
    return found["median_ms"] if found else None


def size_section(size: str, results: list[dict[str, Any]]) -> str:
    """The tables of one data set: per-test costs, the bar, one-off costs."""
    first = results[0]
    out = [
        f"### {size.capitalize()} data set: {first['rows']:,} rows in {first['tables']} tables, "
        f"{first['tests']} tests per strategy",
        "",
        "Median ms per test, from `_pre_setup` to `_post_teardown`; in brackets, the ratio "
        "to Django's `TestCase` in the same run.",
        "",
    ]
    headers = ["strategy", *(engine_label(r) for r in results)]
    rows = []
    for key, label in ROWS:
        cells = []
        for r in results:
            value, base = median(r, key), median(r, TESTCASE)
            if value is None:
                cells.append("failed" if key in r["errors"] else "—")
            elif key == TESTCASE or base is None:
                cells.append(ms(value))
            else:
                cells.append(f"{ms(value)} ({ratio(value, base)})")
        rows.append([label, *cells])
    bar, aim = [], []
    for r in results:
        ttc, reload, tc = (
            median(r, TESTBED_TTC),
            median(r, FLUSH_RELOAD),
            median(r, TESTCASE),
        )
        if ttc is None or reload is None:
            bar.append("—")
        else:
            mark = ""
            if size == "medium" and r["engine"] in ("postgresql", "mysql"):
                mark = " ✓" if ttc * 10 <= reload else " ✗"
            bar.append(ratio(ttc, reload) + mark)
        if ttc is None or tc is None:
            aim.append("—")
        else:
            aim.append(ratio(ttc, tc) + (" ✓" if ttc <= 3 * tc else " ✗"))
    rows.append(
        [
            "**testbed TTC ÷ flush + reload** (bar: ≤ 1/10 on PostgreSQL and MariaDB, medium)",
            *bar,
        ]
    )
    rows.append(["**testbed TTC ÷ `TestCase`** (aim: ≤ 3×)", *aim])
    out += [table(headers, rows), ""]

    one_off = []

    def add(label: str, values: list[str]) -> None:
        one_off.append([label, *values])

    add(
        "create the test database (60 migrations)",
        [ms(r["one_off"].get("migrate_ms")) for r in results],
    )
    add(
        "generate the data set's rows (Python, once per process)",
        [ms(r["one_off"].get("generate_ms")) for r in results],
    )
    add(
        "load the data set into it, once",
        [ms(r["one_off"].get("load_ms")) for r in results],
    )
    add(
        "testbed: build the template (60 migrations, then the loader)",
        [build_time(r) for r in results],
    )
    add(
        "testbed: find the built template again (a later run's cost)",
        [ms(r["testbed"].get("template_lookup_ms")) for r in results],
    )
    add(
        "testbed: make this process's clone of the template",
        [ms(r["testbed"].get("clone_ms")) for r in results],
    )
    add(
        "first test of the flush `TransactionTestCase` (flushes the data set)",
        [ms((r["strategies"].get(FLUSH) or {}).get("first_ms")) for r in results],
    )
    add(
        "testbed TTC: median ms per test inside testbed (the restore)",
        [
            ms((r["strategies"].get(TESTBED_TTC) or {}).get("testbed_median_ms"))
            for r in results
        ],
    )
    add(
        "testbed restores after TTC tests: of changed tables / fresh clones",
        [restores(r) for r in results],
    )
    add("testbed engine and clone method", [engine_methods(r) for r in results])
    out += [
        "One-off costs, ms (outside the per-test figures):",
        "",
        table(["", *(engine_label(r) for r in results)], one_off),
        "",
    ]
    return "\n".join(out)


def build_time(result: dict[str, Any]) -> str:
    info = result["testbed"]
    value = ms(info.get("template_build_ms"))
    return f"reused ({value})" if info.get("template_reused") else value


def restores(result: dict[str, Any]) -> str:
    found = result["strategies"].get(TESTBED_TTC)
    if not found or "restores_tracked" not in found:
        return "—"
    return f"{found['restores_tracked']} / {found['restores_fresh']}"


def engine_methods(result: dict[str, Any]) -> str:
    info = result["testbed"]
    if "engine" not in info:
        return "—"
    methods = info.get("methods", {})
    text = f"`{info['engine']}`"
    if "clone" in methods:
        text += ": " + methods["clone"].replace("``", "`")
    if "strategy" in methods:
        text += f" (STRATEGY {methods['strategy']})"
    return text


def errors_section(results: list[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        for key, text in r["errors"].items():
            last = [line for line in text.strip().splitlines() if line.strip()][-1]
            lines.append(
                f"- {engine_label(r)}, {r['size']}, {key}: `{last.strip()[:300]}`"
            )
    return "Failures:\n\n" + "\n".join(lines) + "\n" if lines else ""


def report(results: list[dict[str, Any]], command: str, seconds: float) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Per-test isolation",
        "",
        f"`{command}`, {now}, {seconds / 60:.1f} minutes in all. {environment(results)}.",
        "",
        "Each test does 2 COUNTs, 3 INSERTs and 1 SELECT. Each strategy runs one warm-up "
        "test, left out of the median, then the measured ones. The flush+reload strategy "
        "reuses rows generated once per process, so it pays only for the database work "
        "(COPY on PostgreSQL, multi-row INSERTs elsewhere). testbed's template is built "
        "from the same 60 migrations and the same loader.",
        "",
    ]
    for size in SIZES:
        group = [r for r in results if r["size"] == size]
        if group:
            out.append(size_section(size, group))
    out.append(errors_section(results))
    return "\n".join(out).rstrip() + "\n"


# --- running ------------------------------------------------------------------------


def run_worker(
    engine: str, size: str, tests: int, keep_template: bool
) -> dict[str, Any]:
    args = ["--engine", engine, "--size", size, "--tests", str(tests)]
    if keep_template:
        args.append("--keep-template")
    result, failure = run_json_worker(
        "benchmarks.isolation", args, WORKER_TIMEOUT, output_flag="--json"
    )
    if result is not None:
        return dict(result)
    return {
        "engine": engine,
        "size": size,
        "tests": tests,
        "rows": 0,
        "tables": 0,
        "one_off": {},
        "strategies": {},
        "testbed": {},
        "errors": {"run": failure or "no result written"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.per_test", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--engines",
        type=lambda v: split_choices(v, ENGINES),
        default=list(DEFAULT_ENGINES),
        help=f"comma-separated, from {', '.join(ENGINES)} (default: {','.join(DEFAULT_ENGINES)})",
    )
    parser.add_argument(
        "--sizes",
        type=lambda v: split_choices(v, SIZES),
        default=None,
        help="comma-separated data sets, from small, medium (default: both; small with --quick)",
    )
    parser.add_argument(
        "--tests",
        type=int,
        default=None,
        help=f"measured tests per strategy (default {DEFAULT_TESTS}; {QUICK_TESTS} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run to check that everything works",
    )
    parser.add_argument(
        "--keep-template",
        action="store_true",
        help="reuse templates built by an earlier run and keep them (the build is then not timed)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "per_test.md",
        help="where to write the tables",
    )
    args = parser.parse_args(argv)
    sizes = args.sizes or (["small"] if args.quick else list(SIZES))
    tests = args.tests or (QUICK_TESTS if args.quick else DEFAULT_TESTS)
    if tests < 1:
        parser.error("--tests must be at least 1")

    command = "python -m benchmarks.per_test" + (
        " " + " ".join(sys.argv[1:]) if argv is None else ""
    )
    start = time.perf_counter()
    results = []
    for size in sizes:
        for engine in args.engines:
            sys.stderr.write(f"{engine}, {size} data set, {tests} tests per strategy\n")
            sys.stderr.flush()
            t0 = time.perf_counter()
            results.append(run_worker(engine, size, tests, args.keep_template))
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
