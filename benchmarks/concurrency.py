"""Concurrent calls: what a batch costs, and how closely its calls overlap.

    python -m benchmarks.concurrency                      # SQLite, PostgreSQL, MariaDB
    python -m benchmarks.concurrency --engines postgresql --batches 50

For each engine, in a fresh process on the benchmark project's settings
(``benchproject``, 3 apps, 25 models), against a new, nearly empty test
database, the same trivial call (one ``SELECT COUNT(*)`` on a 100-row table,
as in the baseline) is made:

- in the benchmark's own process, one call at a time (the floor);
- django-concurrent-test-helper's way: a fresh Python process per call that
  sets Django up, points the alias at the test database and makes the call,
  4 started at once from threads;
- ``call_concurrently(4, ...)`` cold: the first batch, which starts the 4
  worker processes (measured again after shutting the pool down);
- ``call_concurrently(4, ...)`` warm: every later batch;
- ``call_concurrently(4, ..., threads=True)``.

A batch's time is the wall time of the whole call, from the caller's side.
Each call returns ``time.monotonic()`` read as it starts (system-wide on
Linux and macOS); a batch's start-time spread is the latest minus the
earliest. Medians (and maxima for the spread) are printed as a table and
written to ``benchmarks/results/concurrency.md`` (raw figures beside it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCHMARKS_DIR = Path(__file__).resolve().parent
ROOT = BENCHMARKS_DIR.parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
ENGINES = ("sqlite", "postgresql", "mysql")
CONCURRENCY = 4
WORKER_TIMEOUT = 900
# The bar the issue set.
MAX_WARM_OVERHEAD_MS = 50.0
MAX_SPREAD_MS = 10.0

# The seed's child: a new interpreter per call, as `manage.py
# concurrent_call_wrapper` was (setup, test environment, re-pointing).
SEED_CHILD = """\
import os
import django
django.setup()
from django.db import connections
from django.test.utils import setup_test_environment
setup_test_environment()
connections.settings["default"]["NAME"] = os.environ["BENCH_CONCURRENCY_DB"]
from benchmarks.concurrency import count_items
print(count_items())
"""


def count_items() -> float:
    """The trivial call: one COUNT(*). Returns when it started."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bench_item")
        cursor.fetchone()
    return started


def spread_ms(starts: list[float]) -> float:
    return (max(starts) - min(starts)) * 1000


def _timed(function: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return (time.perf_counter() - start) * 1000, value


def _summary(batches: list[tuple[float, list[float]]]) -> dict[str, Any]:
    times = [ms for ms, _ in batches]
    spreads = [spread_ms(starts) for _, starts in batches]
    return {
        "median_ms": statistics.median(times),
        "spread_median_ms": statistics.median(spreads),
        "spread_max_ms": max(spreads),
        "all_ms": times,
        "spreads_ms": spreads,
    }


# --- one engine, in its own process ----------------------------------------------


def _create_database(engine: str, directory: str) -> tuple[Any, str]:
    from django.db import connection

    test = connection.settings_dict["TEST"]
    test["NAME"] = (
        str(Path(directory) / "bench_concurrency.sqlite3")
        if engine == "sqlite"
        else f"test_bench_concurrency_{os.getpid()}"
    )
    # Django's creation without migrations: the calls need one table only.
    name = connection.creation._create_test_db(  # type: ignore[attr-defined]
        verbosity=0, autoclobber=True, keepdb=False
    )
    connection.close()
    connection.settings_dict["NAME"] = name
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_item (id INTEGER PRIMARY KEY, name VARCHAR(20))"
        )
        for i in range(100):
            cursor.execute("INSERT INTO bench_item VALUES (%s, %s)", [i, f"item {i}"])
    return connection, name


def _seed_batch(name: str, engine: str) -> tuple[float, list[float]]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchproject.settings",
        "BENCHPROJECT_ENGINE": engine,
        "BENCH_CONCURRENCY_DB": name,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCHMARKS_DIR)]),
    }

    def one(_: int) -> float:
        done = subprocess.run(
            [sys.executable, "-c", SEED_CHILD],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return _timed(lambda: list(pool.map(one, range(CONCURRENCY))))


def run(engine: str, batches: int, cold: int) -> dict[str, Any]:
    from benchmarks.isolation import setup_django

    setup_django(engine)
    from django.db import connection

    from benchmarks.concurrency import count_items as call
    from testbed import call_concurrently
    from testbed.concurrency import _pool

    out: dict[str, Any] = {"engine": engine, "batches": batches, "cold_batches": cold}
    with tempfile.TemporaryDirectory() as directory:
        _, name = _create_database(engine, directory)
        try:
            out["versions"] = _versions(engine)
            in_process = [_timed(call)[0] for _ in range(200)]
            out["in_process_ms"] = statistics.median(in_process)
            seed = [_seed_batch(name, engine) for _ in range(cold)]
            out["seed"] = _summary(seed)
            cold_batches = []
            for _ in range(cold):
                _pool.shutdown()
                cold_batches.append(
                    _timed(lambda: call_concurrently(CONCURRENCY, call))
                )
            out["cold"] = _summary(cold_batches)
            for _ in range(3):  # settle: connections, caches
                call_concurrently(CONCURRENCY, call)
            warm = [
                _timed(lambda: call_concurrently(CONCURRENCY, call))
                for _ in range(batches)
            ]
            out["warm"] = _summary(warm)
            call_concurrently(CONCURRENCY, call, threads=True)
            threads = [
                _timed(lambda: call_concurrently(CONCURRENCY, call, threads=True))
                for _ in range(batches)
            ]
            out["threads"] = _summary(threads)
        finally:
            _pool.shutdown()
            connection.close()
            connection.creation._destroy_test_db(name, verbosity=0)  # type: ignore[attr-defined]
    return out


def _versions(engine: str) -> dict[str, str]:
    import django
    from django.db import connection

    versions = {"Python": platform.python_version(), "Django": django.get_version()}
    if engine != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            versions["server"] = str(cursor.fetchone()[0])
    return versions


# --- the report ----------------------------------------------------------------------


def ms(value: float) -> str:
    return (
        f"{value:.2f}"
        if value < 10
        else f"{value:.1f}"
        if value < 100
        else f"{value:,.0f}"
    )


def label(result: dict[str, Any]) -> str:
    engine = result["engine"]
    if engine == "sqlite":
        return "SQLite (file)"
    if engine == "postgresql":
        return "PostgreSQL"
    return (
        "MariaDB"
        if "mariadb" in result.get("versions", {}).get("server", "").lower()
        else "MySQL"
    )


def server_version(version: str) -> str:
    """ "15.20" from PostgreSQL's version(), "10.11.19" from MariaDB's."""
    words = version.replace("-", " ").split()
    if words and words[0] == "PostgreSQL":
        return words[1]
    return words[0] if words else version


def report(results: list[dict[str, Any]], command: str) -> str:
    ok = [r for r in results if "error" not in r]
    headers = ["", *(label(r) for r in ok)]

    def row(name: str, cell: Any) -> list[str]:
        return [name, *(cell(r) for r in ok)]

    def overhead(r: dict[str, Any]) -> str:
        value = r["warm"]["median_ms"] - r["in_process_ms"]
        return f"{ms(value)} {'✓' if value <= MAX_WARM_OVERHEAD_MS else '✗'}"

    def spread(key: str, bar: bool = False) -> Any:
        def cell(r: dict[str, Any]) -> str:
            s = r[key]
            mark = ""
            if bar:
                mark = " ✓" if s["spread_median_ms"] <= MAX_SPREAD_MS else " ✗"
            return f"{ms(s['spread_median_ms'])} / {ms(s['spread_max_ms'])}{mark}"

        return cell

    rows = [
        row("one call in this process", lambda r: ms(r["in_process_ms"])),
        row(
            f"seed's way: {CONCURRENCY} fresh Django processes, one per call",
            lambda r: ms(r["seed"]["median_ms"]),
        ),
        row(
            f"testbed, cold batch of {CONCURRENCY} (starts the workers)",
            lambda r: ms(r["cold"]["median_ms"]),
        ),
        row(
            f"testbed, warm batch of {CONCURRENCY}",
            lambda r: ms(r["warm"]["median_ms"]),
        ),
        row(
            f"**warm batch − one call in this process** (bar: ≤ {MAX_WARM_OVERHEAD_MS:.0f})",
            overhead,
        ),
        row(
            f"testbed, `threads=True`, batch of {CONCURRENCY}",
            lambda r: ms(r["threads"]["median_ms"]),
        ),
        row("start-time spread, seed's way (median / max)", spread("seed")),
        row(
            f"**start-time spread, testbed warm** (median / max; bar: ≤ {MAX_SPREAD_MS:.0f})",
            spread("warm", bar=True),
        ),
        row("start-time spread, testbed cold (median / max)", spread("cold")),
        row("start-time spread, `threads=True` (median / max)", spread("threads")),
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    first = ok[0] if ok else {"batches": 0, "cold_batches": 0, "versions": {}}
    versions = dict(first.get("versions", {}))
    versions.pop("server", None)
    servers = ", ".join(
        f"{label(r)} {server_version(r['versions']['server'])}"
        for r in ok
        if "server" in r.get("versions", {})
    )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Concurrent calls",
        "",
        f"`{command}`, {now}. "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + (f", {servers}" if servers else "")
        + f"; {os.cpu_count()} CPUs.",
        "",
        f"Milliseconds, medians of {first['batches']} warm batches and "
        f"{first['cold_batches']} cold ones; each call runs one COUNT(*). "
        "Spread: latest minus earliest start of the calls of one batch.",
        "",
        *lines,
        "",
    ]
    for r in results:
        if "error" in r:
            out.append(f"- {r['engine']}: failed: `{r['error']}`")
    return "\n".join(out).rstrip() + "\n"


# --- running ------------------------------------------------------------------------


def run_engine(engine: str, batches: int, cold: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.concurrency",
            "--worker",
            engine,
            "--batches",
            str(batches),
            "--cold",
            str(cold),
            "--json",
            str(path),
        ]
        try:
            done = subprocess.run(
                command, cwd=ROOT, timeout=WORKER_TIMEOUT, stdout=sys.stderr
            )
            failure = f"exit status {done.returncode}" if done.returncode else ""
        except subprocess.TimeoutExpired:
            failure = f"timed out after {WORKER_TIMEOUT}s"
        if not failure and path.exists():
            result: dict[str, Any] = json.loads(path.read_text())
            return result
    return {"engine": engine, "error": failure or "no result written"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.concurrency", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help=f"comma-separated, from {', '.join(ENGINES)} (default: all)",
    )
    parser.add_argument(
        "--batches", type=int, default=40, help="warm batches (default 40)"
    )
    parser.add_argument(
        "--cold",
        type=int,
        default=5,
        help="cold batches, and seed-style batches (default 5)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "concurrency.md",
        help="where to write the table",
    )
    args = parser.parse_args(argv)
    if args.batches < 1 or args.cold < 1:
        parser.error("--batches and --cold must be at least 1")
    if args.worker:
        result = run(args.worker, args.batches, args.cold)
        args.json.write_text(json.dumps(result, indent=1))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        parser.error(
            f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}"
        )
    results = []
    for engine in engines:
        sys.stderr.write(f"concurrency: {engine} ...\n")
        sys.stderr.flush()
        results.append(run_engine(engine, args.batches, args.cold))
    command = "python -m benchmarks.concurrency" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else ""
    )
    text = report(results, command)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    sys.stderr.write(f"written to {args.output}\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
