"""Schema-safe test databases under pytest-django, and the session summary.

pytest-django keeps creating test databases through Django's
``setup_databases``; while this plugin is active, Django's creation goes
through ``testbed._testdb``, so ``--reuse-db`` reuses a database only while
its schema fingerprint matches, ``--create-db`` rebuilds (once per session,
however many xdist workers ask), and each xdist worker clones one shared
build instead of running migrate.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Generator
from typing import Any

import pytest

_active = pytest.StashKey[bool]()
_session = pytest.StashKey[str]()


def _django_ready(config: pytest.Config) -> bool:
    # pytest-django imports Django only when it has settings to configure;
    # importing it here would load Django where the project has none.
    if not config.pluginmanager.hasplugin("django") or "django.conf" not in sys.modules:
        return False
    from django.conf import settings

    return bool(settings.configured)


def active(config: pytest.Config) -> bool:
    """Whether testbed manages this session's test databases."""
    return bool(config.stash.get(_active, False))


def _worker_input(config: pytest.Config) -> dict[str, Any] | None:
    return getattr(config, "workerinput", None)


def configure(config: pytest.Config) -> None:
    # One token for the whole run: the controller hands it to its workers.
    worker = _worker_input(config)
    config.stash[_session] = (worker or {}).get("testbed_session") or secrets.token_hex(
        8
    )
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "testbed-xdist")
    if config.pluginmanager.hasplugin("django"):
        # Its fixture needs pytest-django's django_db_blocker.
        from testbed.pytest_plugin import _session_end

        config.pluginmanager.register(_session_end, "testbed-session-end")
    # After pytest-django's own pytest_configure, which configures Django.
    if not _django_ready(config):
        return
    from testbed import _config, _stats, _templates, _testdb, _transactional

    _config.snapshot_databases()
    _templates.start_session(
        session=config.stash[_session], force=bool(config.getoption("create_db"))
    )
    # pytest captures what fixtures write; notes go in the summary instead.
    _stats.echo = False
    _testdb.install()
    _transactional.install()
    config.stash[_active] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    if not config.stash.get(_active, False):
        return
    from testbed import _testdb, _transactional

    _transactional.uninstall()
    _testdb.uninstall()
    config.stash[_active] = False


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, Any, Any]:
    # pytest-django's django_db_setup is the database set-up the summary
    # reports, serialization and the rest included.
    if fixturedef.argname != "django_db_setup" or not request.config.stash.get(
        _active, False
    ):
        return (yield)
    from testbed import _stats, _testdb

    # Django's creation calls are testbed's only here, not when a test
    # makes a database of its own.
    with _stats.timed(), _testdb.creating():
        return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and session.config.stash.get(_active, False):
        from testbed import _stats

        workeroutput["testbed_stats"] = _stats.stats.to_dict()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _worker_input(config) is not None:
        return
    if not (config.stash.get(_active, False) or config.stash.get(_merged, False)):
        return
    from testbed import _stats

    stats = _stats.stats
    if not stats.active:
        return
    for line in stats.notes:
        terminalreporter.write_line(line)
    terminalreporter.write_line(stats.summary())


_merged = pytest.StashKey[bool]()


class _XdistHooks:
    """Hooks of pytest-xdist's, registered only when it is installed."""

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["testbed_session"] = node.config.stash[_session]

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        figures = getattr(node, "workeroutput", {}).get("testbed_stats")
        if figures:
            from testbed import _stats

            _stats.stats.merge(figures)
            node.config.stash[_merged] = True
