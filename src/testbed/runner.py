"""A Django test runner that builds the suite's templates up front.

``TEST_RUNNER = "testbed.runner.TestbedRunner"`` (or django-ttdb's name,
``testbed.runner.TemplateDatabaseRunner``). Templates also work without it,
built on first use; the runner adds the up-front build, the clean-up of
this run's clones, and a one-line summary at the end.
"""

from __future__ import annotations

import sys
import unittest
from collections.abc import Iterator
from typing import Any

from django.test.runner import DiscoverRunner

from testbed import _config, _stats, _templates
from testbed._activation import template_names


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
    from testbed.testcases import _method_of

    names: dict[str, None] = {}
    for test in _tests(suite):
        klass = type(test)
        value = getattr(klass, "template_database", None)
        if value is not None:
            names.update(dict.fromkeys(template_names(value, where=klass.__qualname__)))
        method = _method_of(test) if hasattr(test, "_testMethodName") else None
        if method is not None:
            names.update(dict.fromkeys(method.names))
    return list(names)


class TestbedRunner(DiscoverRunner):
    """``DiscoverRunner`` plus template databases built before the tests run."""

    def build_suite(self, *args: Any, **kwargs: Any) -> unittest.TestSuite:
        # Before any test database renames DATABASES entries.
        _config.snapshot_databases()
        suite: unittest.TestSuite = super().build_suite(*args, **kwargs)
        self._testbed_templates = templates_used(suite)
        return suite

    def setup_databases(self, **kwargs: Any) -> Any:
        with _stats.timed():
            old_config = super().setup_databases(**kwargs)
            _templates.ensure_templates(getattr(self, "_testbed_templates", []))
        return old_config

    def teardown_databases(self, old_config: Any, **kwargs: Any) -> None:
        _templates.drop_working_clones()
        super().teardown_databases(old_config, **kwargs)

    def run_tests(self, *args: Any, **kwargs: Any) -> int:
        try:
            failures: int = super().run_tests(*args, **kwargs)
        finally:
            if self.verbosity >= 1:
                sys.stderr.write(_stats.stats.summary() + "\n")
        return failures


# django-ttdb's name for its runner.
TemplateDatabaseRunner = TestbedRunner
