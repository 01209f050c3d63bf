"""A Django test runner: schema-safe test databases and templates up front.

``TEST_RUNNER = "testbed.runner.TestbedRunner"`` (or django-ttdb's name,
``testbed.runner.TemplateDatabaseRunner``). With it, each test database is
a clone of its alias's schema template, so ``--keepdb`` reuses a database
only while its migrations, models and settings are unchanged, and
``--parallel`` clones come from the current build. It also builds the
suite's templates before the tests run, drops this run's working clones,
and prints a one-line summary. Templates work without it, built on first
use.
"""

from __future__ import annotations

import pickle
import sys
import unittest
from collections.abc import Iterator
from typing import Any

from django.test.runner import DiscoverRunner, ParallelTestSuite

from testbed import (
    _clones,
    _config,
    _reset,
    _stats,
    _templates,
    _testdb,
    _transactional,
)
from testbed._activation import method_templates, template_names


def _tests(
    suite: unittest.TestSuite | unittest.TestCase,
) -> Iterator[unittest.TestCase]:
    if isinstance(suite, unittest.TestCase):
        yield suite
        return
    for test in suite:
        yield from _tests(test)


def templates_used(suite: unittest.TestSuite) -> list[str]:
    """The names of the templates the tests in ``suite`` ask for."""
    names: dict[str, None] = {}
    for test in _tests(suite):
        klass = type(test)
        value = getattr(klass, "template_database", None)
        if value is not None:
            names.update(dict.fromkeys(template_names(value, where=klass.__qualname__)))
        names.update(dict.fromkeys(method_templates(test)))
    return list(names)


def _picklable(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry``, or what names its database if the rest cannot be pickled
    (an SSL context in OPTIONS, say)."""
    try:
        pickle.dumps(entry)
    except Exception:
        keys = ("ENGINE", "INNER_ENGINE", "NAME", "HOST", "PORT", "TEST")
        return {k: entry[k] for k in keys if k in entry}
    return entry


def _spawned_worker_setup(databases: dict[str, dict[str, Any]], session: str) -> None:
    """In a spawned ``--parallel`` worker, before Django sets up: DATABASES
    as the project configured it, which the worker cannot see (Django
    renames its settings first), and this run's session."""
    _config.adopt_original_databases(databases)
    _templates.start_session(session=session)
    _transactional.install()


class TestbedParallelTestSuite(ParallelTestSuite):
    """Django's, telling spawned workers what testbed needs to know; a
    forked worker inherits it."""

    process_setup = _spawned_worker_setup

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        databases = {
            alias: _picklable(entry)
            for alias, entry in _config.original_databases().items()
        }
        self.process_setup_args = (databases, _templates.SESSION)


class TestbedRunner(DiscoverRunner):
    """``DiscoverRunner`` with schema-safe test databases and templates."""

    parallel_test_suite = TestbedParallelTestSuite

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Before any test database renames DATABASES entries.
        _config.snapshot_databases()

    def build_suite(self, *args: Any, **kwargs: Any) -> unittest.TestSuite:
        # Before any test database renames DATABASES entries.
        _config.snapshot_databases()
        suite: unittest.TestSuite = super().build_suite(*args, **kwargs)
        self._testbed_templates = templates_used(suite)
        return suite

    def setup_databases(self, **kwargs: Any) -> Any:
        _templates.start_session()
        _testdb.install()
        _transactional.install()
        _testdb.expect_clones(self.parallel)
        # --parallel workers report what they did when they exit.
        _stats.spool_children()
        try:
            with _stats.timed(), _testdb.creating():
                old_config = super().setup_databases(**kwargs)
                _templates.ensure_templates(getattr(self, "_testbed_templates", []))
        except BaseException:
            _transactional.uninstall()
            _testdb.uninstall()
            raise
        return old_config

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        _reset.settle_all()
        _clones.drop_working_clones()
        try:
            super().teardown_databases(old_config, **kwargs)
        finally:
            _reset.release_all()
            _transactional.uninstall()
            _testdb.uninstall()
            _testdb.release_all()

    def run_tests(self, *args: Any, **kwargs: Any) -> int:
        try:
            failures: int = super().run_tests(*args, **kwargs)
        finally:
            _stats.collect_children()
            if self.verbosity >= 1:
                sys.stderr.write(_stats.stats.summary() + "\n")
        return failures


# django-ttdb's name for its runner.
TemplateDatabaseRunner = TestbedRunner
