"""End to end: tests/project's suite under ``manage.py test`` on each engine.

Each test copies the project into a temporary directory, gives it database
names no other run uses, and runs Django in a subprocess, as a user would.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unique_db_name
from tests.utils import Project

INNER_TESTS = 24


@pytest.fixture
def project(vendor: str, tmp_path: Path) -> Iterator[Project]:
    """tests/project copied to a temporary directory, with a legacy
    database (the TTDB source) holding one author."""
    name = unique_db_name("tbp")
    proj = Project.copy(tmp_path / "project", vendor, name)
    proj.env["TESTBED_CACHE_DIR"] = str(tmp_path / "cache")
    legacy = f"{name}_legacy"
    if vendor != "sqlite":
        proj.server(f"CREATE DATABASE {legacy}")
    try:
        proj.manage("migrate", "--database", "legacy", "-v0")
        proj.manage(
            "shell",
            "-c",
            "from catalog.models import Author; "
            "Author.objects.using('legacy').create(name='Legacy Author')",
        )
        yield proj
    finally:
        proj.drop_everything()


def summary(result: subprocess.CompletedProcess[str]) -> str:
    lines = [
        line for line in result.stderr.splitlines() if line.startswith("testbed: ")
    ]
    assert lines, result.stderr
    return lines[-1]


def assert_passed(
    result: subprocess.CompletedProcess[str], count: int = INNER_TESTS
) -> None:
    assert result.returncode == 0, result.stderr
    assert f"Ran {count} tests" in result.stderr, result.stderr
    assert "\nOK" in result.stderr, result.stderr


def test_every_api_form(project: Project) -> None:
    result = project.test()
    assert_passed(result)
    assert summary(result).startswith(
        "testbed: 3 template(s) built (catalog, catalog_other, legacy), 0 reused;"
    )
    # Working clones and test databases are dropped at the end of the run;
    # templates are kept: the three of TESTBED and TTDB, and the schemas of
    # the two aliases the tests use.
    if project.vendor != "sqlite":
        left = project.databases()
        assert not [n for n in left if "_tbc_" in n], left
        assert sorted(n for n in left if "_tbt_" not in n) == [f"{project.name}_legacy"]
        assert len([n for n in left if "_tbt_migrated_" in n]) == 2, left
        assert len([n for n in left if "_tbt_" in n]) == 5, left


def test_template_reused_by_the_next_process(project: Project) -> None:
    assert_passed(project.test())
    second = project.test()
    assert_passed(second)
    assert summary(second).startswith(
        "testbed: 0 template(s) built, 3 reused (catalog, catalog_other, legacy);"
    )
    assert "building template" not in second.stderr


def test_rebuild_after_a_migration_is_edited(project: Project) -> None:
    assert_passed(project.test())
    migration = project.root / "catalog" / "migrations" / "0001_initial.py"
    migration.write_text(
        migration.read_text().replace("max_length=200", "max_length=250")
    )
    again = project.test()
    assert_passed(again)
    assert "(changed: migrations:catalog)" in again.stderr, again.stderr
    assert summary(again).startswith(
        "testbed: 2 template(s) built (catalog, catalog_other), 1 reused (legacy);"
    )


def test_rebuild_after_a_loader_changes(project: Project) -> None:
    assert_passed(project.test())
    loaders = project.root / "catalog" / "loaders.py"
    loaders.write_text(
        loaders.read_text().replace("BOOKS_PER_AUTHOR = 20", "BOOKS_PER_AUTHOR = 21")
    )
    again = project.test("inner.test_templates.InheritedTests")
    assert "building template 'catalog'" in again.stderr
    assert "(changed: loaders)" in again.stderr
    # The inner test expects 100 books; the rebuilt template has the new 105.
    assert again.returncode == 1
    assert "AssertionError: 105 != 100" in again.stderr


def _wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_killed_builder_leaves_nothing_that_is_used(project: Project) -> None:
    loaders = project.root / "catalog" / "loaders.py"
    flag = project.root / "loading"
    loaders.write_text(
        loaders.read_text()
        + "\n\nimport os, pathlib, time\n"
        + "_orig = load_other\n\n\n"
        + "def load_other(*, using: str) -> None:\n"
        + "    _orig(using=using)\n"
        + "    if os.environ.get('TESTBED_HANG'):\n"
        + f"        pathlib.Path({str(flag)!r}).touch()\n"
        + "        time.sleep(600)\n"
    )
    project.env["TESTBED_HANG"] = "1"
    builder = project.popen(
        "manage.py", "test", "--noinput", "inner.test_templates.SeveralDatabasesTests"
    )
    try:
        _wait_for(flag.exists)
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.communicate()
    del project.env["TESTBED_HANG"]
    result = project.test("inner.test_templates.SeveralDatabasesTests")
    assert result.returncode == 0, result.stderr
    # The half-built template was not reused: it was built again.
    assert "building template 'catalog_other'" in result.stderr
    assert "1 template(s) built" in summary(result) or "2 template(s) built" in summary(
        result
    )


def test_two_processes_building_at_once_build_once(project: Project) -> None:
    script = (
        "import django; django.setup(); "
        "from testbed._templates import ensure_templates; ensure_templates(['catalog'])"
    )
    env = {**project.env, "DJANGO_SETTINGS_MODULE": "settings"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=project.root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    builds = sum(err.count("building template 'catalog'") for _, err in outputs)
    assert builds == 1, outputs


def test_runs_without_the_custom_runner(project: Project) -> None:
    project.env["TESTBED_RUNNER"] = "django.test.runner.DiscoverRunner"
    result = project.test()
    assert_passed(result)
    assert "building template 'catalog'" in result.stderr


def test_unknown_template_names_the_setting(project: Project) -> None:
    tests = project.root / "inner" / "test_unknown.py"
    tests.write_text(
        "from django.test import TestCase\n"
        "from testbed import use_template_database\n\n\n"
        "@use_template_database('nope')\n"
        "class T(TestCase):\n"
        "    def test_it(self):\n"
        "        pass\n"
    )
    result = project.test("inner.test_unknown")
    assert result.returncode != 0
    assert re.search(
        r"Unknown template database 'nope' \('catalog', 'catalog_other', 'legacy'\)\. "
        r"Define it in settings\.TESTBED",
        result.stderr,
    ), result.stderr


# --- unsupported targets (in-process) -----------------------------------------


def test_decorating_a_class_that_is_not_a_transaction_test_case() -> None:
    import unittest

    from testbed import use_template_database

    class Plain(unittest.TestCase):
        pass

    with pytest.raises(TypeError) as excinfo:
        use_template_database("x")(Plain)
    assert excinfo.value.args == (
        "use_template_database() can only decorate "
        "django.test.TransactionTestCase subclasses (TestCase, "
        "TransactionTestCase, LiveServerTestCase) or their test methods, not "
        "test_decorating_a_class_that_is_not_a_transaction_test_case.<locals>.Plain.",
    )


def test_decorating_something_that_is_not_a_test() -> None:
    from testbed import use_template_database

    with pytest.raises(TypeError) as excinfo:
        use_template_database("x")(42)
    assert excinfo.value.args == (
        "use_template_database() decorates test classes and test methods, not int objects.",
    )


def test_decorating_a_method_of_a_plain_class() -> None:
    from testbed import use_template_database

    # Python reports errors from __set_name__ as the class statement's error.
    with pytest.raises((TypeError, RuntimeError)) as excinfo:

        class Plain:
            @use_template_database("x")
            def test_it(self) -> None:
                pass

    error = (
        excinfo.value
        if isinstance(excinfo.value, TypeError)
        else excinfo.value.__cause__
    )
    assert isinstance(error, TypeError)
    assert str(error).endswith(
        "not of test_decorating_a_method_of_a_plain_class.<locals>.Plain."
    )


def test_a_template_name_is_required() -> None:
    from testbed import use_template_database

    with pytest.raises(TypeError, match=r"needs at least one template name"):
        use_template_database()
