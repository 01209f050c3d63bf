"""End to end: live-server tests sharing the test's connection, on each engine,
on the project's own DATABASES and on testbed.backends.shared.

Each test copies tests/liveproject into a temporary directory, gives it
database names no other run uses, and runs its suite in a subprocess:
Django's test runner for testbed.testcases (and the browser), pytest for
pytest-django's live_server.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import unique_db_name

LIVEPROJECT = Path(__file__).parent / "liveproject"


def _browser() -> ModuleType:
    """The project's live/browser.py: what the browser test needs."""
    spec = importlib.util.spec_from_file_location(
        "liveproject_browser", LIVEPROJECT / "live" / "browser.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


class LiveProject:
    def __init__(self, root: Path, vendor: str, shared_engine: bool) -> None:
        self.root = root
        self.vendor = vendor
        self.name = unique_db_name("tblive")
        self.env = {
            **os.environ,
            "TESTBED_ENGINE": vendor,
            "TESTBED_DBNAME": self.name,
            "TESTBED_CACHE_DIR": str(root / "cache"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": str(root),
            "DJANGO_SETTINGS_MODULE": "settings",
        }
        if shared_engine:
            self.env["TESTBED_SHARED_BACKEND"] = "1"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def test(self, *labels: str) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", "test", "--noinput", *labels)

    def drop_databases(self) -> None:
        """Drop what the run left on the server: template databases."""
        if self.vendor == "postgresql":
            import psycopg

            with psycopg.connect(
                host="127.0.0.1", user="root", dbname="postgres", autocommit=True
            ) as conn:
                names = conn.execute(
                    "SELECT datname FROM pg_database WHERE strpos(datname, %s) > 0",
                    (self.name,),
                ).fetchall()
                for (name,) in names:
                    conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
                    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        elif self.vendor == "mysql":
            import MySQLdb

            conn = MySQLdb.connect(host="127.0.0.1", user="root")
            try:
                cursor = conn.cursor()
                cursor.execute(
                    "SELECT schema_name FROM information_schema.schemata "
                    "WHERE LOCATE(%s, schema_name) > 0",
                    (self.name,),
                )
                for (name,) in cursor.fetchall():
                    cursor.execute(f"DROP DATABASE `{name}`")
            finally:
                conn.close()


@pytest.fixture(params=["databases", "shared-engine"])
def liveproject(
    vendor: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LiveProject]:
    """tests/liveproject copied to a temporary directory, on ``vendor``: on
    its own DATABASES, then on testbed.patch_databases(DATABASES)."""
    root = tmp_path / "liveproject"
    shutil.copytree(LIVEPROJECT, root, ignore=shutil.ignore_patterns("__pycache__"))
    project = LiveProject(root, vendor, request.param == "shared-engine")
    try:
        yield project
    finally:
        project.drop_databases()


def assert_ran(result: subprocess.CompletedProcess[str], count: int) -> None:
    assert result.returncode == 0, result.stderr
    assert f"Ran {count} tests" in result.stderr, result.stderr
    # "OK" alone: none skipped.
    assert re.search(r"^OK$", result.stderr, re.MULTILINE), result.stderr


def test_live_server_test_cases(liveproject: LiveProject) -> None:
    # Sharing, twenty parallel requests, threads, bad requests; and
    # TemplateDBLiveServerTestCase, which rolls back on the shared engine.
    assert_ran(liveproject.test("live.test_sharing", "live.test_templates"), 16)


def test_a_real_browser(liveproject: LiveProject) -> None:
    problem = _browser().problem()
    if problem:
        if _in_ci():
            pytest.fail(f"CI=true, but {problem}")
        pytest.skip(problem)
    assert_ran(liveproject.test("live.test_browser"), 2)


def test_a_view_that_leaves_a_block_open_fails_its_test(
    liveproject: LiveProject,
) -> None:
    result = liveproject.test("bad.test_leak")
    assert result.returncode == 1
    assert "Ran 2 tests" in result.stderr
    assert "FAILED (errors=1)" in result.stderr
    assert "ERROR: test_1_leaking_view (bad.test_leak.LeakTests" in result.stderr
    assert (
        "testbed._sharing._state.SharingError: The live-server request GET /leak/ "
        "left 1 transaction.atomic() block(s) open on database 'default'; testbed "
        "rolled them back so the test's transaction survives. Exit every atomic "
        "block a view enters (use `with transaction.atomic():`).\n"
    ) in result.stderr


def test_pytest_live_server_on_plain_django_db(
    liveproject: LiveProject, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(liveproject.root, pytester.path, dirs_exist_ok=True)
    for key, value in liveproject.env.items():
        if key.startswith("TESTBED_") or key == "DJANGO_SETTINGS_MODULE":
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-W", "error", "-v", "pytests"
    )
    result.assert_outcomes(passed=9)
    # The template test rolled back: its clone needed no restore.
    result.stdout.fnmatch_lines(["testbed: *; 1 clone(s) made; 0 restore(s) *"])
    # testbed ran the shared live_server tests with the TestCase ones, before
    # pytest-django's transactional test and its flush.
    result.stdout.re_match_lines(
        [
            r"pytests/test_live_server.py::test_nothing_left_behind_and_nothing_flushed PASSED",
            r"pytests/test_live_server.py::test_transaction_true_still_commits PASSED",
        ],
        consecutive=True,
    )
