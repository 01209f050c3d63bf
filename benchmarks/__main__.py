"""Every benchmark suite, one after another, in one run.

    python -m benchmarks                         # every suite, full length
    python -m benchmarks --quick                 # short runs, to check they work
    python -m benchmarks --suites per_test,db_setup
    python -m benchmarks --update-readme         # and put the tables in README.md

Each suite runs in its own process (``python -m benchmarks.<suite>``) and
writes its table to ``benchmarks/results/<suite>.md``; this collects them
into ``benchmarks/results/latest.md`` and, with ``--update-readme``, into
README.md between its benchmark markers. Suites compare testbed with
Django's and pytest-django's own strategies side by side within one run.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"

# Suite, what it measures, and its arguments for --quick.
SUITES: dict[str, tuple[str, list[str]]] = {
    "transactional": ("unchanged transactional tests", ["--quick"]),
    "per_test": ("per-test isolation", ["--quick"]),
    "db_setup": ("test database set-up", ["--runs", "1"]),
    "concurrency": ("concurrent calls", ["--batches", "5", "--cold", "1"]),
    "live_server": ("live-server tests", ["--sizes", "small", "--tests", "5"]),
    "pg_strategy": ("PostgreSQL's clone strategy", ["--runs", "1", "--resets", "3"]),
    "mysql_clone": ("MariaDB/MySQL clone methods", ["--runs", "1", "--sizes", "small"]),
}


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _split(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}"
        )
    return names


def update_readme(text: str) -> None:
    readme = README.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md has no {START} … {END} markers to replace between")
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    README.write_text(f"{head}{START}\n{text.strip()}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--suites",
        type=_split,
        default=list(SUITES),
        help=f"comma-separated, from {', '.join(SUITES)} (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs, to check they work"
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="write the tables into README.md between its benchmark markers",
    )
    args = parser.parse_args(argv)

    start = time.perf_counter()
    failed = []
    sections = []
    for suite in args.suites:
        what, quick = SUITES[suite]
        sys.stderr.write(f"== {suite}: {what}\n")
        sys.stderr.flush()
        command = [
            sys.executable,
            "-m",
            f"benchmarks.{suite}",
            *(quick if args.quick else []),
        ]
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        output = RESULTS / f"{suite}.md"
        if done.returncode or not output.exists():
            failed.append(suite)
            sections.append(
                f"## {what.capitalize()}\n\n`{suite}` failed (exit status {done.returncode}).\n"
            )
            continue
        sections.append(output.read_text())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Measured {now} at commit {_git_commit()} by `python -m benchmarks"
        f"{' --quick' if args.quick else ''}`, {(time.perf_counter() - start) / 60:.0f} "
        f"minutes in all, on {platform.machine()} Linux with Python "
        f"{platform.python_version()}: a shared 2-core machine, so compare ratios "
        "within one run rather than absolute times."
    )
    text = header + "\n\n" + "\n\n".join(s.strip() for s in sections) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(text)
    print(text)
    if args.update_readme:
        update_readme(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
