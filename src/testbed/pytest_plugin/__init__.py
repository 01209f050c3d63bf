"""testbed's pytest plugin: an extension of pytest-django, never a replacement.

Registered through the ``pytest11`` entry point as ``testbed``. pytest-django
keeps its marker, fixtures and flags; this package adds to them. Django is
imported lazily: the plugin loads before settings are configured.

- ``_setup``: schema-safe ``--reuse-db`` and ``--create-db``, one build shared
  by xdist workers, the session summary.
- ``_templates``: the ``template_database`` marker and fixture.
- ``_live_server``: ``live_server`` with a plain ``django_db`` test, sharing
  the test's connection instead of flushing.
"""

from __future__ import annotations

import pytest

from testbed.pytest_plugin import _live_server, _setup, _templates
from testbed.pytest_plugin._setup import (
    pytest_fixture_setup,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_unconfigure,
)
from testbed.pytest_plugin._templates import (
    pytest_itemcollected,
    template_database,
)

__all__ = [
    "pytest_itemcollected",
    "pytest_configure",
    "pytest_fixture_setup",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
    "pytest_unconfigure",
    "template_database",
]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # trylast: after pytest-django's, which configures Django.
    _templates.configure(config)
    _setup.configure(config)
    _live_server.configure(config)
