"""End to end: the pytest plugin in a project's own pytest run, on each engine.

Each test writes a small project with ``pytester`` and runs pytest in a
subprocess (pytest-django and testbed both loaded, as users have them),
changing the project between runs the way a developer does.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tests.conftest import unique_db_name
from tests.pytest_project import PluginProject, notes_of, summary
from tests.utils import databases_containing, drop_databases_containing


@pytest.fixture
def project(
    pytester: pytest.Pytester, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PluginProject]:
    """A pytest project on ``vendor``, its databases dropped afterwards."""
    # The project's ini names its settings; this run's would win over it.
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    name = unique_db_name("tbpy")
    proj = PluginProject(pytester, vendor, name)
    try:
        yield proj
    finally:
        drop_databases_containing(vendor, name)


def test_reuse_db_reuses_an_unchanged_database(project: PluginProject) -> None:
    first = project.run("--reuse-db")
    first.assert_outcomes(passed=4)
    assert "1 schema(s) built (default), 0 reused" in summary(first)
    assert "1 test database(s) cloned, 0 reused" in summary(first)

    second = project.run("--reuse-db")
    second.assert_outcomes(passed=4)
    assert "0 schema(s) built, 1 reused" in summary(second)
    assert "0 test database(s) cloned, 1 reused" in summary(second)
    assert not [line for line in notes_of(second) if "building" in line]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("edited", "changed: migrations:shop, models:shop"),
        ("added", "changed: migrations:shop, models:shop"),
        ("removed", "changed: migrations:shop, models:shop"),
    ],
)
def test_reuse_db_rebuilds_after_a_migration_change(
    project: PluginProject, change: str, reason: str
) -> None:
    if change == "removed":
        # A branch that added a NOT NULL column, then a switch back to one
        # without it: a reused database keeps the column and inserts fail.
        project.schema(version=2)
    project.run("--reuse-db").assert_outcomes(passed=4)
    if change == "edited":
        project.schema(version=2, edited=True)
    elif change == "added":
        project.schema(version=2)
    else:
        project.schema(version=1)

    again = project.run("--reuse-db")
    again.assert_outcomes(passed=4)
    lines = notes_of(again)
    assert any(
        line.startswith("testbed: building schema of 'default'")
        and f"({reason})" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("testbed: recreating test database") and f"({reason})" in line
        for line in lines
    ), lines


def test_reuse_db_rebuilds_after_a_model_change_under_nomigrations(
    project: PluginProject,
) -> None:
    project.run("--reuse-db", "--nomigrations").assert_outcomes(passed=4)
    # Only the model changes: no migration is written.
    project.schema(version=2)
    project.remove("shop/migrations/0002_item_colour.py")

    again = project.run("--reuse-db", "--nomigrations")
    again.assert_outcomes(passed=4)
    lines = notes_of(again)
    assert any(
        "building schema of 'default'" in line and "(changed: models:shop)" in line
        for line in lines
    ), lines
    assert any(
        "recreating test database" in line and "(changed: models:shop)" in line
        for line in lines
    ), lines


def test_without_testbed_a_reused_database_goes_stale(project: PluginProject) -> None:
    """The failure the plugin exists to prevent, with pytest-django alone."""
    project.run("-p", "no:testbed", "--reuse-db").assert_outcomes(passed=4)
    project.schema(version=2, edited=True)
    stale = project.run("-p", "no:testbed", "--reuse-db")
    stale.assert_outcomes(failed=4)

    # testbed does not drop the database pytest-django made; it leaves it
    # to Django and says how to hand it over.
    kept = project.run("--reuse-db")
    kept.assert_outcomes(failed=4)
    assert any("was not made by testbed" in line for line in notes_of(kept))
    handed_over = project.run("--create-db", "--reuse-db")
    handed_over.assert_outcomes(passed=4)
    project.run("--reuse-db").assert_outcomes(passed=4)


def test_create_db_rebuilds_once(project: PluginProject) -> None:
    project.run("--reuse-db").assert_outcomes(passed=4)
    forced = project.run("--reuse-db", "--create-db")
    forced.assert_outcomes(passed=4)
    lines = notes_of(forced)
    assert [
        line for line in lines if "building schema" in line and "(--create-db)" in line
    ]
    assert "1 schema(s) built (default)" in summary(forced)
    assert "1 test database(s) cloned, 0 reused" in summary(forced)


def test_xdist_workers_share_one_build(project: PluginProject) -> None:
    result = project.run("-n", "2")
    result.assert_outcomes(passed=4)
    line = summary(result)
    assert "1 schema(s) built (default), 1 reused" in line, line
    assert "2 test database(s) cloned, 0 reused" in line, line
    assert line.endswith("across 2 workers"), line
    # Without --reuse-db the workers' databases are gone afterwards.
    if project.vendor != "sqlite":
        left = databases_containing(project.vendor, project.name)
        assert not [n for n in left if "_gw" in n], left
    else:
        assert not list(project.path.glob("*_gw*"))

    project.run("-n", "2", "--reuse-db").assert_outcomes(passed=4)
    again = project.run("-n", "2", "--reuse-db")
    again.assert_outcomes(passed=4)
    assert "0 test database(s) cloned, 2 reused" in summary(again)


BARRIER = """
import os, pathlib, time

import pytest

from shop.models import Item


@pytest.mark.django_db
def test_at_the_same_time():
    here = pathlib.Path(__file__).parent
    (here / f"running-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while len(list(here.glob("running-*"))) < 2:
        assert time.monotonic() < deadline, "the other session never started"
        time.sleep(0.05)
    Item.objects.create(name="mine")
    time.sleep(0.5)
    assert Item.objects.count() == 1
"""


def test_two_sessions_at_once_do_not_break_each_other(project: PluginProject) -> None:
    project.write("test_shop.py", BARRIER)
    runs = [project.popen("--reuse-db") for _ in range(2)]
    texts = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], texts
    assert sum("1 passed" in text for text in texts) == 2, texts
    stand_ins = [text for text in texts if "is in use by another test run" in text]
    assert len(stand_ins) == 1, texts
    # The stand-in is dropped; the reusable database is kept.
    assert project.leftovers() == []
    if project.vendor != "sqlite":
        assert f"test_{project.name}" in databases_containing(
            project.vendor, project.name
        )


HANG = """
import os, pathlib, time

from django.db import migrations


def hang(apps, schema_editor):
    if os.environ.get("TESTBED_HANG"):
        pathlib.Path(os.environ["TESTBED_HANG"]).touch()
        time.sleep(600)


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(hang, migrations.RunPython.noop)]
"""


def test_a_session_killed_during_the_build(
    project: PluginProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("shop/migrations/0002_hang.py", HANG)
    flag = project.path / "building"
    monkeypatch.setenv("TESTBED_HANG", str(flag))
    builder = project.popen("--reuse-db")
    try:
        _wait_for(flag.exists, builder)
    finally:
        builder.send_signal(signal.SIGKILL)
        builder.communicate()
    monkeypatch.delenv("TESTBED_HANG")

    again = project.run("--reuse-db")
    again.assert_outcomes(passed=4)
    lines = notes_of(again)
    assert any(
        "building schema of 'default'" in line
        and "(an earlier build of it was cut short)" in line
        for line in lines
    ), lines


def _wait_for(predicate: object, process: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if process.poll() is not None:  # type: ignore[attr-defined]
            raise AssertionError("the process ended before it got there")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


TEMPLATE_TESTS = """
import pytest

from shop.models import Item

pytestmark = pytest.mark.template_database("catalog")


def test_rolls_back():
    assert Item.objects.count() == 50
    Item.objects.all().delete()


def test_sees_the_template_again():
    assert Item.objects.count() == 50


@pytest.mark.django_db(transaction=True)
class TestCommitting:
    def test_commits(self):
        Item.objects.all().delete()
        Item.objects.create(name="committed")
        assert Item.objects.count() == 1

    def test_sees_the_template_again(self):
        assert Item.objects.count() == 50


@pytest.mark.django_db(transaction=True)
@pytest.mark.template_database("catalog", reload_after_test=False)
def test_keeps_changes_1():
    Item.objects.create(name="kept")


@pytest.mark.django_db(transaction=True)
@pytest.mark.template_database("catalog", reload_after_test=False)
def test_keeps_changes_2():
    assert Item.objects.filter(name="kept").count() == 1

"""

FIXTURE_TESTS = """
import pytest

from shop.models import Item


def test_fixture_alone(template_database):
    assert Item.objects.count() == 50
    assert set(template_database) == {"default"}
    assert "_tbc_catalog_" in template_database["default"]


@pytest.mark.parametrize("template_database", ["catalog"], indirect=True)
def test_parametrized(template_database):
    assert Item.objects.count() == 50


@pytest.mark.django_db
def test_without_template():
    assert Item.objects.count() == 0
"""


def test_template_marker_and_fixture(project: PluginProject) -> None:
    project.write("test_shop.py", TEMPLATE_TESTS)
    project.write("test_fixture.py", FIXTURE_TESTS)
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=9)
    line = summary(result)
    assert "1 template(s) built (catalog)" in line, line
    # Two transactional tests reloaded; the reload_after_test=False ones not.
    assert "2 restore(s)" in line, line
    assert project.leftovers() == []
    # --reuse-db keeps the test database, never the clones.
    project.run("--reuse-db").assert_outcomes(passed=9)
    assert project.leftovers() == []


def test_template_errors_name_the_fix(project: PluginProject) -> None:
    project.write(
        "settings.py",
        (project.path / "settings.py")
        .read_text()
        .replace('"TEMPLATES": {', '"TEMPLATES": {"second": {"LOADERS": []}, '),
    )
    project.write(
        "test_shop.py",
        """
        import pytest
        from django.test import TestCase


        def test_needs_a_name(template_database):
            pass


        @pytest.mark.template_database("nope")
        def test_unknown():
            pass


        class TestDjango(TestCase):
            pytestmark = pytest.mark.template_database("catalog")

            def test_it(self):
                pass
        """,
    )
    result = project.run()
    result.assert_outcomes(errors=3)
    for line in (
        "*The template_database fixture needs template names: add "
        "@pytest.mark.template_database('name') to the test, its class or module.",
        "Unknown template database 'nope' ('second', 'catalog'). Define it in *",
        "*The template_database marker and fixture are for pytest-style tests; put "
        "TestDjango on templates with @use_template_database(...) or a "
        "template_database class attribute.",
    ):
        result.stdout.fnmatch_lines([line])


def test_fixture_is_documented(project: PluginProject) -> None:
    result = project.run("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "template_database*",
            "*Run the test on clones of testbed template databases.*",
        ]
    )


def test_plugin_is_inert_without_pytest_django(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed without pytest-django (or with it turned off), testbed's
    plugin adds nothing and breaks nothing."""
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:django")
    result.assert_outcomes(passed=1)
    assert "testbed:" not in result.stdout.str()


def test_plugin_is_inert_without_django_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "testbed:" not in result.stdout.str()
