"""Transactional tests reset by undoing what they changed (testbed._reset,
testbed._transactional), on each engine.

In process, the reset itself, on this session's own test databases. End to
end, tests/dropin: a plain Django suite (TransactionTestCase,
serialized_rollback, available_apps, reset_sequences, two databases,
LiveServerTestCase, and pytest-django's fixtures for the same), which must
pass with Django's runner and with testbed's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import ALIAS, unique_db_name
from tests.utils import Project

DROPIN = Path(__file__).parent / "dropin"
FLUSH = "django.test.runner.DiscoverRunner"


def flush(alias: str, *, inhibit: bool = False, serialized: bool = False) -> None:
    """What a TransactionTestCase's teardown asks of testbed."""
    from testbed import _reset

    test = SimpleNamespace(serialized_rollback=serialized)
    assert _reset.flush(test, alias, allow_cascade=False, inhibit_post_migrate=inhibit)


def permission_ids(alias: str) -> set[int]:
    from django.contrib.auth.models import Permission

    return set(Permission.objects.using(alias).values_list("id", flat=True))


# --- in process --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=list(ALIAS.values()))
def test_a_flush_empties_what_holds_rows_and_keeps_post_migrate_rows(
    vendor: str,
) -> None:
    from django.contrib.auth.models import User

    from testbed._stats import stats
    from tests.races.models import Counter, Ticket

    alias = ALIAS[vendor]
    flush(alias)
    kept = permission_ids(alias)
    assert kept
    made = stats.resets_post_migrate
    Counter.objects.using(alias).create(value=1)
    Ticket.objects.using(alias).create(code="x")
    User.objects.using(alias).create(username="u")
    flush(alias)
    assert Counter.objects.using(alias).count() == 0
    assert Ticket.objects.using(alias).count() == 0
    assert User.objects.using(alias).count() == 0
    # post_migrate's rows were left as they were, not made again.
    assert permission_ids(alias) == kept
    assert stats.resets_post_migrate == made


@pytest.mark.django_db(transaction=True, databases=list(ALIAS.values()))
def test_post_migrate_runs_again_when_a_test_changed_its_rows(vendor: str) -> None:
    from django.contrib.auth.models import Permission

    from testbed._stats import stats

    alias = ALIAS[vendor]
    flush(alias)
    made = stats.resets_post_migrate
    Permission.objects.using(alias).filter(codename="add_counter").delete()
    flush(alias)
    assert stats.resets_post_migrate == made + 1
    assert Permission.objects.using(alias).filter(codename="add_counter").exists()


@pytest.mark.django_db(transaction=True, databases=list(ALIAS.values()))
def test_an_inhibited_flush_leaves_every_table_empty(vendor: str) -> None:
    from django.contrib.contenttypes.models import ContentType

    alias = ALIAS[vendor]
    flush(alias)
    assert ContentType.objects.using(alias).exists()
    flush(alias, inhibit=True)
    assert not ContentType.objects.using(alias).exists()


@pytest.mark.django_db(transaction=True, databases=list(ALIAS.values()))
def test_serialized_rollback_loads_the_migrated_state_back(vendor: str) -> None:
    from django.apps import apps
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from testbed import _reset, _testdb
    from testbed._stats import stats

    alias = ALIAS[vendor]
    connection = connections[alias]
    managed = _testdb._managed[alias, connection.settings_dict["NAME"]]
    baseline = _reset.baseline_for(connection, template=managed.template, fresh=False)
    assert baseline is not None
    assert {"django_content_type", "auth_permission"} <= baseline.tables
    # As a serialized test's flush leaves it: every table empty.
    flush(alias, inhibit=True, serialized=True)
    assert not ContentType.objects.using(alias).exists()
    loads = stats.serialized_restores
    connection.creation.deserialize_db_from_string(baseline)
    assert stats.serialized_restores == loads + 1
    models = [m for m in apps.get_models() if m._meta.default_permissions]
    assert ContentType.objects.using(alias).count() == len(apps.get_models())
    assert Permission.objects.using(alias).count() == 4 * len(models)
    # Nothing changed since: the next load writes nothing.
    with CaptureQueriesContext(connection) as queries:
        connection.creation.deserialize_db_from_string(baseline)
    assert not [q for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]


@pytest.mark.django_db(transaction=True, databases=list(ALIAS.values()))
def test_a_serialized_flush_leaves_the_migrated_state_for_the_next_one(
    vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.apps import apps
    from django.contrib.auth.models import Permission, User
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections

    from testbed import _reset, _testdb

    alias = ALIAS[vendor]
    connection = connections[alias]
    managed = _testdb._managed[alias, connection.settings_dict["NAME"]]
    baseline = _reset.baseline_for(connection, template=managed.template, fresh=False)
    assert baseline is not None
    monkeypatch.setattr(
        connection, "_test_serialized_contents", baseline, raising=False
    )
    flush(alias, inhibit=True, serialized=True)
    connection.creation.deserialize_db_from_string(baseline)
    migrated = set(ContentType.objects.using(alias).values_list("id", "model"))
    # A test changes migrated rows (a new permission points at a new content
    # type) and others.
    extra = ContentType.objects.using(alias).create(app_label="extra", model="extra")
    Permission.objects.using(alias).create(
        codename="extra", name="extra", content_type=extra
    )
    Permission.objects.using(alias).filter(codename="add_counter").delete()
    User.objects.using(alias).create(username="u")
    flush(alias, inhibit=True, serialized=True)
    # The migrated tables hold that state again, for the next serialized test.
    assert set(ContentType.objects.using(alias).values_list("id", "model")) == migrated
    models = [m for m in apps.get_models() if m._meta.default_permissions]
    assert Permission.objects.using(alias).count() == 4 * len(models)
    assert not User.objects.using(alias).exists()
    db = _reset._databases[alias, connection.settings_dict["NAME"]]
    assert {"django_content_type", "auth_permission"} <= db.pending
    # Anything else finds what Django's flush leaves: nothing.
    _reset.settle([alias])
    assert not ContentType.objects.using(alias).exists()
    assert not Permission.objects.using(alias).exists()
    assert not db.pending


def test_only_the_setting_s_two_values_are_accepted(settings: Any) -> None:
    from testbed import _reset
    from testbed._settings import ConfigurationError

    settings.TESTBED = {"TRANSACTIONAL_RESET": "rollback"}
    with pytest.raises(ConfigurationError) as raised:
        _reset.mode()
    assert str(raised.value) == (
        "settings.TESTBED['TRANSACTIONAL_RESET'] is 'rollback'; use 'tracked' "
        "(transactional tests undo what they changed) or 'flush' (Django's "
        "flush after each one)."
    )
    settings.TESTBED = {"TRANSACTIONAL_RESET": "flush"}
    assert _reset.mode() == "flush"


# --- end to end --------------------------------------------------------------------


@pytest.fixture
def dropin(vendor: str, tmp_path: Path) -> Iterator[Project]:
    """tests/dropin in a temporary directory, on ``vendor``."""
    proj = Project.copy(tmp_path / "dropin", vendor, unique_db_name("tbd"), DROPIN)
    proj.env["TESTBED_CACHE_DIR"] = str(tmp_path / "cache")
    proj.env["DROPIN_ALIASES"] = str(tmp_path / "aliases.txt")
    try:
        yield proj
    finally:
        proj.drop_everything()


def summary(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("testbed: ")]
    assert lines, output
    return lines[-1]


def test_a_plain_django_suite_passes_as_with_djangos_runner(dropin: Project) -> None:
    dropin.env["TESTBED_RUNNER"] = FLUSH
    vanilla = dropin.manage("test", "--noinput", "shelf")
    assert "Ran 16 tests" in vanilla.stderr
    aliases = Path(dropin.env["DROPIN_ALIASES"])
    aliases.unlink()
    del dropin.env["TESTBED_RUNNER"]
    result = dropin.manage("test", "--noinput", "shelf")
    assert "Ran 16 tests" in result.stderr
    assert re.search(
        r"16 transactional reset\(s\) \(16 of changed tables, \d+ re-running "
        r"post_migrate, 0 flushed by Django\), 2 serialized_rollback load\(s\) "
        r"from the baseline",
        summary(result.stderr),
    )
    # No connection_created receiver met a connection of testbed's own:
    # django.contrib.postgres's (on PostgreSQL) and the project's, which
    # looks each connection up by alias.
    assert set(aliases.read_text().split()) == {"default", "other"}


def test_flush_setting_keeps_djangos_flush(dropin: Project) -> None:
    dropin.env["TESTBED_TRANSACTIONAL_RESET"] = "flush"
    result = dropin.manage("test", "--noinput", "shelf")
    assert "Ran 16 tests" in result.stderr
    assert "transactional reset" not in summary(result.stderr)


def test_pytest_django_suite_under_xdist(dropin: Project) -> None:
    vanilla = dropin.run(
        "-m",
        "pytest",
        "-p",
        "no:testbed",
        "-p",
        "no:xdist",
        "shelf/test_with_pytest.py",
    )
    assert "9 passed" in vanilla.stdout
    result = dropin.run(
        "-m", "pytest", "-n", "2", "--dist", "loadfile", "shelf/test_with_pytest.py"
    )
    assert "9 passed" in result.stdout
    assert re.search(
        r"8 transactional reset\(s\) \(8 of changed tables, \d+ re-running "
        r"post_migrate, 0 flushed by Django\), 2 serialized_rollback load\(s\)",
        summary(result.stdout),
    )


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_parallel_workers_reset_their_own_clones(dropin: Project, start: str) -> None:
    if start == "spawn" and dropin.vendor == "sqlite":
        pytest.skip("Django 5.2 cannot spawn workers for an in-memory SQLite database")
    dropin.env["TESTBED_START_METHOD"] = start
    labels = [
        "shelf.tests.Step2SerializedTests",
        "shelf.tests.Step4TransactionalTests",
        "shelf.tests.Step7TwoDatabaseTests",
    ]
    result = dropin.manage("test", "--noinput", "--parallel", "2", *labels)
    assert "Ran 8 tests" in result.stderr
    assert re.search(
        r"10 transactional reset\(s\) \(10 of changed tables, \d+ re-running "
        r"post_migrate, 0 flushed by Django\), 2 serialized_rollback load\(s\)",
        summary(result.stderr),
    )


def test_a_test_database_testbed_did_not_make_is_flushed_as_django_does(
    dropin: Project,
) -> None:
    # A file, which --keepdb keeps (an in-memory database is always new).
    dropin.env["TESTBED_SQLITE_FILE"] = "1"
    dropin.env["TESTBED_RUNNER"] = FLUSH
    dropin.manage(
        "test", "--noinput", "--keepdb", "shelf.tests.Step4TransactionalTests"
    )
    del dropin.env["TESTBED_RUNNER"]
    result = dropin.manage(
        "test", "--noinput", "--keepdb", "shelf.tests.Step4TransactionalTests"
    )
    assert "Ran 4 tests" in result.stderr
    assert (
        "testbed did not make this test database, so its transactional tests "
        "are flushed as Django does; drop it, or run once with --create-db "
        "(pytest) or without --keepdb (manage.py test), to let testbed make it"
    ) in result.stderr
    assert "4 transactional reset(s) (0 of changed tables, 0 re-running " in summary(
        result.stderr
    )
    assert "4 flushed by Django)" in summary(result.stderr)


def test_a_test_that_makes_its_own_test_database_gets_djangos(
    dropin: Project,
) -> None:
    """Django's own suite calls create_test_db() with migrate mocked: outside
    the runner's set-up, creation is Django's."""
    (dropin.root / "shelf" / "test_creation.py").write_text(
        "import copy\n"
        "from unittest import mock\n"
        "from django.db import connections\n"
        "from django.test import TransactionTestCase\n\n\n"
        "class CreationTests(TransactionTestCase):\n"
        "    def test_migrate_is_djangos(self):\n"
        "        default = connections['default']\n"
        "        settings = copy.deepcopy(default.settings_dict)\n"
        "        own = default.__class__(settings, 'default')\n"
        "        old = settings['NAME']\n"
        "        with mock.patch(\n"
        "            'django.db.migrations.executor.MigrationExecutor.migrate'\n"
        "        ) as migrate:\n"
        "            own.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)\n"
        "        try:\n"
        "            self.assertEqual(migrate.call_count, 1)\n"
        "        finally:\n"
        "            own.creation.destroy_test_db(old, verbosity=0)\n"
        "            own.close()\n"
    )
    result = dropin.manage("test", "--noinput", "shelf.test_creation")
    assert "Ran 1 test" in result.stderr
    assert "OK" in result.stderr
