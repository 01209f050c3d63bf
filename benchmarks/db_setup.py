"""Test-database set-up: Django's, pytest-django's and testbed's, side by side.

    python -m benchmarks.db_setup                     # every engine, 5 runs a cell
    python -m benchmarks.db_setup --engines postgresql --runs 3

The project is ``benchproject`` (60 migrations, 25 models), copied to a
temporary directory with a suite of 4 trivial tests in 2 classes, both as
Django ``TestCase`` classes and as pytest functions. Each cell is the
median wall time of the whole command, start to exit, as a user sees it:

- cold: nothing kept from an earlier run (no test database, no template);
- warm: testbed's schema template is kept, the test database is not;
- reused: ``--keepdb`` / ``--reuse-db`` after a run that kept everything;
- after an edited migration: a migration file changed since the last run
  (a comment: testbed's fingerprint sees the bytes). Django's keepdb and
  pytest-django's ``--reuse-db`` would not notice a real change; the only
  correct choice they offer is a cold run;
- ``-n 2`` (pytest-xdist) and ``--parallel 2`` (Django's runner).

testbed and plain Django use different database names, so neither finds
the other's databases. Prints a markdown table and writes it to
``benchmarks/results/db_setup.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.utils import drop_databases_containing

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
ENGINES = ("sqlite", "postgresql", "mysql")
LABELS = {"sqlite": "SQLite (file)", "postgresql": "PostgreSQL", "mysql": "MariaDB"}

DJANGO_TESTS = """
from django.test import TestCase

from benchproject.catalog.models import Product


class FirstTests(TestCase):
    def test_one(self):
        self.assertEqual(Product.objects.count(), 0)

    def test_two(self):
        self.assertEqual(Product.objects.count(), 0)


class SecondTests(TestCase):
    def test_three(self):
        self.assertEqual(Product.objects.count(), 0)

    def test_four(self):
        self.assertEqual(Product.objects.count(), 0)
"""

PYTEST_TESTS = """
import pytest

from benchproject.catalog.models import Product


@pytest.mark.django_db
@pytest.mark.parametrize("i", range(4))
def test_count(i):
    assert Product.objects.count() == 0
"""

# Times pytest-django's django_db_setup fixture, the database set-up; each
# process (an xdist worker too) appends its milliseconds to a file.
CONFTEST = """
import os
import time

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if fixturedef.argname != "django_db_setup" or not os.environ.get("DB_SETUP_TIMES"):
        return (yield)
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        with open(os.environ["DB_SETUP_TIMES"], "a") as times:
            times.write(f"{(time.perf_counter() - start) * 1000}\\n")
"""

PYTEST_INI = """
[pytest]
DJANGO_SETTINGS_MODULE = benchproject.settings
pythonpath = .
addopts = -p no:cacheprovider -q
"""

RUNNER = "testbed.runner.TestbedRunner"
DJANGO_RUNNER = "django.test.runner.DiscoverRunner"


@dataclass
class Cell:
    key: str
    label: str
    # The cell this one is compared with (its ratio is this / that).
    versus: str | None = None


CELLS = [
    Cell("floor", "`python -c 'django.setup()'`: the floor for any command"),
    Cell("dj_cold", "`manage.py test`, Django (creates, migrates, destroys)"),
    Cell(
        "tb_cold",
        "`manage.py test`, testbed, cold (builds the schema template)",
        "dj_cold",
    ),
    Cell("tb_warm", "`manage.py test`, testbed, template warm (clones it)", "dj_cold"),
    Cell("dj_keep", "`manage.py test --keepdb`, Django (runs migrate)"),
    Cell(
        "tb_keep",
        "`manage.py test --keepdb`, testbed (checks the fingerprint)",
        "dj_keep",
    ),
    Cell(
        "tb_keep_edit",
        "`manage.py test --keepdb`, testbed, after an edited migration",
        "dj_cold",
    ),
    Cell("dj_par", "`manage.py test --parallel 2`, Django"),
    Cell("tb_par", "`manage.py test --parallel 2`, testbed, template warm", "dj_par"),
    Cell("dj_par_keep", "`manage.py test --parallel 2 --keepdb`, Django"),
    Cell(
        "tb_par_keep", "`manage.py test --parallel 2 --keepdb`, testbed", "dj_par_keep"
    ),
    Cell("pd_cold", "`pytest`, pytest-django (creates, migrates, destroys)"),
    Cell("pt_cold", "`pytest`, testbed, cold (builds the schema template)", "pd_cold"),
    Cell("pt_warm", "`pytest`, testbed, template warm (clones it)", "pd_cold"),
    Cell("pd_reuse", "`pytest --reuse-db`, pytest-django (runs migrate)"),
    Cell(
        "pt_reuse", "`pytest --reuse-db`, testbed (checks the fingerprint)", "pd_reuse"
    ),
    Cell(
        "pt_reuse_edit",
        "`pytest --reuse-db`, testbed, after an edited migration",
        "pd_cold",
    ),
    Cell("pd_x", "`pytest -n 2`, pytest-django (each worker migrates)"),
    Cell("pt_x_cold", "`pytest -n 2`, testbed, cold (one build, two clones)", "pd_x"),
    Cell("pt_x", "`pytest -n 2`, testbed, template warm", "pd_x"),
    Cell("pd_x_reuse", "`pytest -n 2 --reuse-db`, pytest-django"),
    Cell("pt_x_reuse", "`pytest -n 2 --reuse-db`, testbed", "pd_x_reuse"),
]


class Project:
    """benchproject and its suites in a temporary directory, on one engine."""

    def __init__(self, root: Path, engine: str) -> None:
        self.root = root
        self.engine = engine
        shutil.copytree(
            BENCHMARKS / "benchproject",
            root / "benchproject",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        (root / "suite").mkdir()
        (root / "suite" / "__init__.py").write_text("")
        (root / "suite" / "test_django.py").write_text(DJANGO_TESTS)
        (root / "pytest_suite").mkdir()
        (root / "pytest_suite" / "test_pytest.py").write_text(PYTEST_TESTS)
        (root / "pytest.ini").write_text(PYTEST_INI)
        (root / "conftest.py").write_text(CONFTEST)
        self.sqlite_dir = root / "sqlite"
        self.sqlite_dir.mkdir()
        self._edits = 0

    def env(self, *, testbed: bool) -> dict[str, str]:
        env = {
            **os.environ,
            "BENCHPROJECT_ENGINE": self.engine,
            "BENCHPROJECT_DBNAME": self.dbname(testbed=testbed),
            "BENCHPROJECT_SQLITE_DIR": str(self.sqlite_dir),
            "BENCHPROJECT_RUNNER": RUNNER if testbed else DJANGO_RUNNER,
            "DJANGO_SETTINGS_MODULE": "benchproject.settings",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return env

    def dbname(self, *, testbed: bool) -> str:
        return f"tbbench_{'tb' if testbed else 'dj'}_{os.getpid()}"

    def run(self, args: list[str], *, testbed: bool) -> tuple[float, float | None]:
        """Wall seconds of ``python *args``, and the seconds its database
        set-up took (Django's ``--timing``, or the conftest's record; the
        slowest process's under xdist), None if it has none."""
        times = self.root / "db_setup_times"
        times.unlink(missing_ok=True)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env={**self.env(testbed=testbed), "DB_SETUP_TIMES": str(times)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({self.engine}):\n{result.stdout}\n{result.stderr}"
            )
        setup: float | None = None
        found = re.search(r"Total database setup took ([\d.]+)s", result.stderr)
        if found:
            setup = float(found.group(1))
        elif times.exists():
            setup = max(float(v) for v in times.read_text().split()) / 1000
        return seconds, setup

    def manage(self, *options: str, testbed: bool) -> tuple[float, float | None]:
        return self.run(
            [
                "benchproject/manage.py",
                "test",
                "--noinput",
                "--timing",
                "suite",
                *options,
            ],
            testbed=testbed,
        )

    def pytest(self, *options: str, testbed: bool) -> tuple[float, float | None]:
        plugin = [] if testbed else ["-p", "no:testbed"]
        return self.run(
            ["-m", "pytest", "pytest_suite", *plugin, *options], testbed=testbed
        )

    def floor(self) -> tuple[float, float | None]:
        return self.run(["-c", "import django; django.setup()"], testbed=False)

    def edit_migration(self) -> None:
        self._edits += 1
        path = self.root / "benchproject" / "catalog" / "migrations" / "0001_initial.py"
        path.write_text(path.read_text() + f"# edit {self._edits}\n")

    def clean(self) -> None:
        """Drop every database and file of this project's runs."""
        for testbed in (True, False):
            drop_databases_containing(self.engine, self.dbname(testbed=testbed))
        for path in self.sqlite_dir.iterdir():
            path.unlink()


def measure(
    runs: int,
    before: Callable[[], None] | None,
    command: Callable[[], tuple[float, float | None]],
) -> tuple[float, float | None]:
    """Median milliseconds of ``command``'s wall time and database set-up,
    ``before`` run untimed each time."""
    walls, setups = [], []
    for _ in range(runs):
        if before is not None:
            before()
        wall, setup = command()
        walls.append(wall * 1000)
        if setup is not None:
            setups.append(setup * 1000)
    return statistics.median(walls), statistics.median(setups) if setups else None


def bench_engine(
    engine: str, runs: int, progress: Callable[[str], None]
) -> dict[str, tuple[float, float | None]]:
    out: dict[str, tuple[float, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="testbed-db-setup-") as tmp:
        p = Project(Path(tmp), engine)
        p.clean()
        try:

            def cell(
                key: str,
                before: Callable[[], None] | None,
                command: Callable[[], tuple[float, float | None]],
            ) -> None:
                progress(f"{engine}: {key}")
                out[key] = measure(runs, before, command)

            cell("floor", None, p.floor)
            # manage.py test
            cell("dj_cold", p.clean, lambda: p.manage(testbed=False))
            cell("tb_cold", p.clean, lambda: p.manage(testbed=True))
            cell("tb_warm", None, lambda: p.manage(testbed=True))
            p.manage("--keepdb", testbed=False)
            cell("dj_keep", None, lambda: p.manage("--keepdb", testbed=False))
            p.manage("--keepdb", testbed=True)
            cell("tb_keep", None, lambda: p.manage("--keepdb", testbed=True))
            cell(
                "tb_keep_edit",
                p.edit_migration,
                lambda: p.manage("--keepdb", testbed=True),
            )
            p.clean()
            cell("dj_par", None, lambda: p.manage("--parallel", "2", testbed=False))
            p.manage(testbed=True)
            cell("tb_par", None, lambda: p.manage("--parallel", "2", testbed=True))
            p.manage("--parallel", "2", "--keepdb", testbed=False)
            cell(
                "dj_par_keep",
                None,
                lambda: p.manage("--parallel", "2", "--keepdb", testbed=False),
            )
            p.manage("--parallel", "2", "--keepdb", testbed=True)
            cell(
                "tb_par_keep",
                None,
                lambda: p.manage("--parallel", "2", "--keepdb", testbed=True),
            )
            # pytest
            p.clean()
            cell("pd_cold", None, lambda: p.pytest(testbed=False))
            cell("pt_cold", p.clean, lambda: p.pytest(testbed=True))
            cell("pt_warm", None, lambda: p.pytest(testbed=True))
            p.pytest("--reuse-db", testbed=False)
            cell("pd_reuse", None, lambda: p.pytest("--reuse-db", testbed=False))
            p.pytest("--reuse-db", testbed=True)
            cell("pt_reuse", None, lambda: p.pytest("--reuse-db", testbed=True))
            cell(
                "pt_reuse_edit",
                p.edit_migration,
                lambda: p.pytest("--reuse-db", testbed=True),
            )
            p.clean()
            cell("pd_x", None, lambda: p.pytest("-n", "2", testbed=False))
            cell("pt_x_cold", p.clean, lambda: p.pytest("-n", "2", testbed=True))
            cell("pt_x", None, lambda: p.pytest("-n", "2", testbed=True))
            p.pytest("-n", "2", "--reuse-db", testbed=False)
            cell(
                "pd_x_reuse",
                None,
                lambda: p.pytest("-n", "2", "--reuse-db", testbed=False),
            )
            p.pytest("-n", "2", "--reuse-db", testbed=True)
            cell(
                "pt_x_reuse",
                None,
                lambda: p.pytest("-n", "2", "--reuse-db", testbed=True),
            )
        finally:
            p.clean()
    return out


def ratio(value: float, base: float) -> str:
    r = value / base
    if r >= 0.95:
        return f"{r:.1f}×"
    return f"1/{base / value:.1f}"


def _table(
    results: dict[str, dict[str, tuple[float, float | None]]], which: int
) -> list[str]:
    engines = list(results)
    lines = [
        "| command | " + " | ".join(LABELS[e] for e in engines) + " |",
        "|---|" + "---|" * len(engines),
    ]
    for cell in CELLS:
        values = []
        for engine in engines:
            found = results[engine].get(cell.key)
            value = found[which] if found else None
            base_found = results[engine].get(cell.versus) if cell.versus else None
            base = base_found[which] if base_found else None
            if value is None:
                values.append("—")
            elif base:
                values.append(f"{value:,.0f} ({ratio(value, base)})")
            else:
                values.append(f"{value:,.0f}")
        if which == 1 and all(v == "—" for v in values):
            continue
        lines.append(f"| {cell.label} | " + " | ".join(values) + " |")
    return lines


def report(results: dict[str, dict[str, tuple[float, float | None]]], runs: int) -> str:
    lines = [
        "## Test database set-up",
        "",
        "benchproject (60 migrations, 25 models) with 4 trivial tests; medians of "
        f"{runs} runs, in ms; in brackets, testbed's figure as a ratio of the Django "
        "or pytest-django command it replaces.",
        "",
        'Database set-up alone: Django\'s `--timing` ("Total database setup"), or '
        "pytest-django's `django_db_setup` fixture (under `-n 2`, the slower worker's):",
        "",
        *_table(results, 1),
        "",
        "The whole command, start to exit, as a user waits for it:",
        "",
        *_table(results, 0),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.db_setup", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated: sqlite, postgresql, mysql",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per cell (default 5)")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    for engine in engines:
        if engine not in ENGINES:
            parser.error(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")

    def progress(message: str) -> None:
        print(f"  {message}", file=sys.stderr, flush=True)

    results = {engine: bench_engine(engine, args.runs, progress) for engine in engines}
    text = report(results, args.runs)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "db_setup.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
