"""``live_server`` on a plain ``django_db`` test: a ``TestCase``, no flush.

pytest-django makes every test that uses ``live_server`` transactional
(its ``_live_server_helper`` requests ``transactional_db``, and its
``_django_db_helper`` builds a ``TransactionTestCase`` for any test whose
fixtures include ``live_server``): the server could not see the test's
transaction otherwise. testbed shares the test's connections with the
server instead (``testbed._sharing``), so a test that asks for
non-transactional access (``@pytest.mark.django_db``, or the ``db``
fixture) keeps it: rollback, no flush, the server sees its data. Tests
that ask for ``transaction=True``, ``transactional_db``, reset sequences,
or no database at all, get pytest-django's behaviour unchanged.

The two fixtures below override pytest-django's of the same names and call
them; they are registered after pytest-django's, from the plugin's
``pytest_configure`` (trylast), as pytest takes the fixture registered last.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

HIDDEN = ("live_server", "transactional_db")


def _marker_flags(item: pytest.Item) -> tuple[bool, bool, Any] | None:
    """``(transaction, reset_sequences, databases)`` of the test's django_db mark."""
    marker = item.get_closest_marker("django_db")
    if marker is None:
        return None
    from pytest_django.fixtures import validate_django_db

    transaction, reset_sequences, databases, _, _ = validate_django_db(marker)
    return transaction, reset_sequences, databases


def shares(item: pytest.Item) -> bool:
    """Whether ``item`` is a live_server test that asked for non-transactional
    database access, which testbed gives it by sharing its connection."""
    from pytest_django.django_compat import is_django_unittest

    names = getattr(item, "fixturenames", ())
    if "live_server" not in names or is_django_unittest(item):
        return False
    if "transactional_db" in names or "django_db_reset_sequences" in names:
        return False
    flags = _marker_flags(item)
    if flags is None:
        return "db" in names  # no database at all: pytest-django's, as before
    transaction, reset_sequences, _ = flags
    return not (transaction or reset_sequences)


def _aliases(item: pytest.Item) -> list[str]:
    from django.db import DEFAULT_DB_ALIAS, connections

    flags = _marker_flags(item)
    databases = flags[2] if flags else None
    if databases is None:
        return [DEFAULT_DB_ALIAS]
    if databases == "__all__":
        return list(connections)
    return list(databases)


@contextmanager
def _hidden_from_pytest_django(request: pytest.FixtureRequest) -> Iterator[None]:
    """pytest-django's helper decides "transactional" from the names of the
    test's fixtures; hide ``live_server`` from it while it decides."""
    item = request.node
    names = item.fixturenames
    defs: dict[str, Any] = getattr(request, "_fixture_defs", {})
    saved = {name: defs.pop(name) for name in HIDDEN if name in defs}
    item.fixturenames = [name for name in names if name not in HIDDEN]
    try:
        yield
    finally:
        item.fixturenames = names
        defs.update(saved)


class LiveServerFixtures:
    """Registered as a plugin after pytest-django: its fixtures win."""

    @pytest.fixture
    def _django_db_helper(self, request: pytest.FixtureRequest) -> None:
        """pytest-django's, with ``live_server`` left out of its decision for
        tests testbed shares a connection with the live server."""
        if shares(request.node):
            with _hidden_from_pytest_django(request):
                request.getfixturevalue("_django_db_helper")
        else:
            request.getfixturevalue("_django_db_helper")

    @pytest.fixture(autouse=True)
    def _live_server_helper(self, request: pytest.FixtureRequest) -> Iterator[None]:
        """pytest-django's, except for tests with non-transactional database
        access: the live server shares the test's connections (it sees the
        test's data; what it writes is rolled back with the test)."""
        __tracebackhide__ = True
        if not shares(request.node):
            request.getfixturevalue("_live_server_helper")
            yield
            return
        from django.db import connections

        from testbed._sharing import Sharing, SharingError

        request.getfixturevalue("_django_db_helper")
        in_test = [
            connections[alias]
            for alias in _aliases(request.node)
            if connections[alias].in_atomic_block
        ]
        if not in_test:
            raise SharingError(
                "testbed could not open a TestCase transaction for this "
                "live_server test: pytest-django made it transactional. Use "
                "@pytest.mark.django_db(transaction=True) to say so, or report "
                "this with your pytest-django version."
            )
        live_server = request.getfixturevalue("live_server")
        live_server._live_server_modified_settings.enable()
        sharing = Sharing(in_test)
        sharing.start()
        try:
            yield
        finally:
            try:
                sharing.stop()  # waits for the requests in flight
            finally:
                live_server._live_server_modified_settings.disable()
        sharing.check()

    @pytest.hookimpl
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # pytest-django (tryfirst) runs live_server tests with the
        # transactional ones; those testbed shares roll back as TestCase
        # does, so they run before any flush, with the TestCase tests.
        from pytest_django.lazy_django import django_settings_is_configured

        if django_settings_is_configured() and any(shares(i) for i in items):
            items.sort(key=_order)


def _order(item: pytest.Item) -> int:
    """pytest-django's order (its get_order_number), shared tests as TestCase."""
    from django.test import TestCase, TransactionTestCase

    if shares(item):
        return 0
    cls = getattr(item, "cls", None)
    if cls is not None and issubclass(cls, TransactionTestCase):
        return 0 if issubclass(cls, TestCase) else 1
    names = getattr(item, "fixturenames", ())
    flags = _marker_flags(item)
    transactional = bool(flags and (flags[0] or flags[1])) or any(
        name in names for name in HIDDEN
    )
    if transactional:
        return 1
    return 0 if flags is not None or "db" in names else 2


def configure(config: pytest.Config) -> None:
    """Called from the plugin's ``pytest_configure`` (trylast)."""
    if config.pluginmanager.hasplugin("django"):
        config.pluginmanager.register(LiveServerFixtures(), "testbed-live-server")
