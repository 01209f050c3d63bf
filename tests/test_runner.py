"""End to end: ``manage.py test`` under ``testbed.runner.TestbedRunner``.

``--keepdb`` reuses a test database only while its schema is unchanged,
and ``--parallel`` clones come from the current build (Django ticket
#26822: with Django's own runner they go stale).
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unique_db_name
from tests.utils import Project

NICKNAME_MIGRATION = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="author",
            name="nickname",
            field=models.CharField(default="", max_length=50),
        ),
    ]
"""

# Four classes, so --parallel 2 gives each worker some.
NICKNAME_TESTS = (
    "from django.test import TestCase\n\nfrom catalog.models import Author\n"
    + "".join(
        textwrap.dedent(
            f"""

        class Nickname{i}Tests(TestCase):
            def test_nickname(self):
                Author.objects.create(name="a", nickname="n{i}")
                self.assertEqual(Author.objects.get().nickname, "n{i}")
        """
        )
        for i in range(4)
    )
)

# Two classes, so that --parallel 2 makes two clones.
SIMPLE_TESTS = """
from django.test import TestCase

from catalog.models import Author


class AuthorTests(TestCase):
    def test_create(self):
        Author.objects.create(name="a")
        self.assertEqual(Author.objects.count(), 1)


class OtherAuthorTests(TestCase):
    def test_create(self):
        Author.objects.create(name="b")
        self.assertEqual(Author.objects.count(), 1)
"""


@pytest.fixture
def project(vendor: str, tmp_path: Path) -> Iterator[Project]:
    """tests/project, with tests that need no legacy database."""
    proj = Project.copy(tmp_path / "project", vendor, unique_db_name("tbr"))
    proj.env["TESTBED_CACHE_DIR"] = str(tmp_path / "cache")
    if vendor == "sqlite":
        proj.env["TESTBED_SQLITE_FILE"] = "1"  # in memory, nothing is kept
    (proj.root / "inner" / "test_simple.py").write_text(SIMPLE_TESTS)
    try:
        yield proj
    finally:
        proj.drop_everything()


def summary(result: subprocess.CompletedProcess[str]) -> str:
    lines = [
        line for line in result.stderr.splitlines() if " template(s) built" in line
    ]
    assert lines, result.stderr
    return lines[-1]


def run(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    result = project.test(*args)
    assert result.returncode == 0, result.stderr
    return result


def add_nickname(project: Project) -> None:
    migrations = project.root / "catalog" / "migrations"
    (migrations / "0002_author_nickname.py").write_text(NICKNAME_MIGRATION)
    models = project.root / "catalog" / "models.py"
    models.write_text(
        models.read_text().replace(
            "    name = models.CharField(max_length=100, unique=True)\n",
            "    name = models.CharField(max_length=100, unique=True)\n"
            '    nickname = models.CharField(max_length=50, default="")\n',
            1,
        )
    )
    (project.root / "inner" / "test_nickname.py").write_text(NICKNAME_TESTS)


def test_keepdb_reuses_an_unchanged_database(project: Project) -> None:
    first = run(project, "--keepdb", "inner.test_simple")
    assert "1 test database(s) cloned, 0 reused" in summary(first)
    second = run(project, "--keepdb", "inner.test_simple")
    assert "0 test database(s) cloned, 1 reused" in summary(second)
    assert "Using existing test database for alias 'default'" in second.stderr
    assert "testbed: building" not in second.stderr


def test_keepdb_rebuilds_after_a_migration_is_edited(project: Project) -> None:
    run(project, "--keepdb", "inner.test_simple")
    migration = project.root / "catalog" / "migrations" / "0001_initial.py"
    migration.write_text(
        migration.read_text().replace("max_length=200", "max_length=250")
    )
    again = run(project, "--keepdb", "inner.test_simple")
    assert re.search(
        r"testbed: recreating test database '[^']+' \(changed: migrations:catalog\)",
        again.stderr,
    ), again.stderr
    assert "1 test database(s) cloned, 0 reused" in summary(again)


def test_parallel_clones_follow_a_new_migration(project: Project) -> None:
    run(project, "--keepdb", "--parallel", "2", "inner.test_simple")
    add_nickname(project)
    again = run(project, "--keepdb", "--parallel", "2", "inner.test_nickname")
    assert "Ran 4 tests" in again.stderr
    # The main database and both clones were out of date and replaced.
    assert again.stderr.count("testbed: recreating test database") == 3, again.stderr
    assert "3 test database(s) cloned, 0 reused" in summary(again)


def test_without_testbed_parallel_clones_go_stale(project: Project) -> None:
    """Django ticket #26822, the failure the runner exists to prevent."""
    project.env["TESTBED_RUNNER"] = "django.test.runner.DiscoverRunner"
    first = project.test("--keepdb", "--parallel", "2", "inner.test_simple")
    if project.vendor == "sqlite":
        # Worse still: Django copies only the main file of a WAL-mode
        # database, so its clones lack the tables (testbed's have them).
        assert first.returncode != 0
        assert "no such table: catalog_author" in first.stderr
        return
    assert first.returncode == 0, first.stderr
    add_nickname(project)
    stale = project.test("--keepdb", "--parallel", "2", "inner.test_nickname")
    assert stale.returncode != 0
    assert "nickname" in stale.stderr


def run_three_classes_in_parallel(project: Project) -> subprocess.CompletedProcess[str]:
    """Three template classes under ``--parallel 2``."""
    classes = ("PlainTests", "InheritedTests", "TransactionTests")
    return run(
        project,
        "--parallel",
        "2",
        *(f"inner.test_templates.{name}" for name in classes),
    )


def test_parallel_workers_report_in_the_summary(project: Project) -> None:
    result = run_three_classes_in_parallel(project)
    line = summary(result)
    # Only the workers run tests, so the restores are their report, and all
    # six are there only if every worker's was merged. ("across 2 workers"
    # is not certain: a worker still starting may leave all three classes
    # to the other.)
    assert "6 restore(s)" in line, line
    assert "0 clone(s) made" not in line, line


def test_spawned_parallel_workers_share_the_parents_templates(project: Project) -> None:
    """Spawned workers (macOS's default) import everything afresh, after
    Django renamed their settings; they must still find the run's
    templates, not derive names of their own from the renamed ones."""
    import django

    if project.vendor == "sqlite" and django.VERSION < (6, 0):
        pytest.skip(
            "Django 5.2 cannot spawn --parallel workers for a SQLite file "
            "database (its setup_worker_connection opens a file only an "
            "in-memory database leaves); Django 6.0 can."
        )
    project.env["TESTBED_START_METHOD"] = "spawn"
    result = run_three_classes_in_parallel(project)
    line = summary(result)
    # Built once, by the parent: a worker that derived names of its own
    # would build another. The restores are the workers' report (see above).
    assert "1 template(s) built (catalog)" in line, line
    assert "6 restore(s)" in line, line
    if project.vendor != "sqlite":
        named_after_clones = [
            n for n in project.databases() if n.startswith(f"test_test_{project.name}")
        ]
        assert named_after_clones == []
