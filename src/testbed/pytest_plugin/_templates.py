"""Template databases in pytest: the ``template_database`` marker and fixture.

The fixture points the template's aliases at this process's clone before
pytest-django opens the test's transaction (the collection hook puts it
first), so everything the test writes lands in the clone: rolled back
without ``transaction=True``, restored to the template's state (never
flushed) with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from testbed.pytest_plugin._live_server import shares

if TYPE_CHECKING:
    from testbed._activation import Activation

MARKER = "template_database"
FIXTURE = "template_database"

# pytest-django's names for a test that commits. live_server is one only
# where testbed does not share the test's connection with the server (see
# _django_db_options).
_TRANSACTIONAL_FIXTURES = ("transactional_db", "django_db_reset_sequences")


def configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names, reload_after_test=True): run the test on clones of "
        "the named testbed template databases (TESTBED['TEMPLATES'] or TTDB); "
        "implies django_db. See the template_database fixture.",
    )


def _marker_names(item: pytest.Item) -> tuple[str, ...]:
    marker = item.get_closest_marker(MARKER)
    return tuple(marker.args) if marker is not None else ()


def pytest_itemcollected(item: pytest.Item) -> None:
    fixturenames: list[str] | None = getattr(item, "fixturenames", None)
    if fixturenames is None:
        return
    if item.get_closest_marker(MARKER) is None and FIXTURE not in fixturenames:
        return
    # First of all function fixtures: before pytest-django's autouse
    # _django_db_marker opens the test's transaction on the alias.
    if FIXTURE in fixturenames:
        fixturenames.remove(FIXTURE)
    fixturenames.insert(0, FIXTURE)
    # Now, before pytest-django orders tests by their django_db markers.
    if item.get_closest_marker("django_db") is None:
        item.add_marker(pytest.mark.django_db)


def _django_db_options(request: pytest.FixtureRequest) -> tuple[bool, Any]:
    """(transactional, databases) as pytest-django decides them."""

    def signature(
        transaction: bool = False,
        reset_sequences: bool = False,
        databases: Any = None,
        serialized_rollback: bool = False,
        available_apps: Any = None,
    ) -> tuple[bool, Any]:
        return bool(transaction or reset_sequences), databases

    marker = request.node.get_closest_marker("django_db")
    transactional, databases = (
        signature(*marker.args, **marker.kwargs) if marker else (False, None)
    )
    transactional = (
        transactional
        or any(name in request.fixturenames for name in _TRANSACTIONAL_FIXTURES)
        # live_server commits only where testbed does not share the test's
        # connection with it.
        or ("live_server" in request.fixturenames and not shares(request.node))
    )
    return transactional, databases


def _requested(request: pytest.FixtureRequest) -> tuple[tuple[str, ...], bool]:
    """The template names and reload flag asked for, marker first."""
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:

        def options(
            *names: str, reload_after_test: bool = True
        ) -> tuple[tuple[str, ...], bool]:
            return names, reload_after_test

        try:
            names, reload = options(*marker.args, **marker.kwargs)
        except TypeError as exc:
            raise pytest.UsageError(
                f"@pytest.mark.{MARKER}(*names, reload_after_test=True): {exc}"
            ) from None
        return names, reload
    param = getattr(request, "param", None)
    if param is not None:
        return ((param,) if isinstance(param, str) else tuple(param)), True
    from testbed._config import templates

    configured = list(templates())
    if len(configured) == 1:
        return (configured[0],), True
    return (), True


@pytest.fixture
def template_database(
    request: pytest.FixtureRequest, django_db_setup: None, django_db_blocker: Any
) -> Iterator[dict[str, str]]:
    """Run the test on clones of testbed template databases.

    Name the templates with ``@pytest.mark.template_database("name", ...)``
    on the test, its class or its module (``pytestmark``), or by indirect
    parametrization; with only one template configured, requesting the
    fixture is enough. It implies ``@pytest.mark.django_db``.

    Without ``transaction=True`` the test runs inside a transaction that is
    rolled back, as in ``django.test.TestCase``: the clone keeps the
    template's state. With ``transaction=True`` the test commits for real,
    and afterwards its clone is brought back to the template's state
    instead of being flushed, so every test sees the whole data set
    (``reload_after_test=False`` on the marker keeps the changes instead).

    Yields a dict of each database alias the templates serve to the name of
    the clone it now uses.
    """
    __tracebackhide__ = True
    from django.test import SimpleTestCase

    from testbed._activation import unflushed
    from testbed._errors import TestbedError

    if isinstance(request.instance, SimpleTestCase):
        pytest.fail(
            f"The {MARKER} marker and fixture are for pytest-style tests; put "
            f"{type(request.instance).__qualname__} on templates with "
            "@use_template_database(...) or a template_database class attribute.",
            pytrace=False,
        )
    names, reload = _requested(request)
    if not names:
        pytest.fail(
            f"The {MARKER} fixture needs template names: add "
            f"@pytest.mark.{MARKER}('name') to the test, its class or module.",
            pytrace=False,
        )
    transactional, databases = _django_db_options(request)
    try:
        activation = _start(names, reload, transactional, databases, django_db_blocker)
    except TestbedError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        from django.db import connections

        served = {
            alias: str(connections.settings[alias]["NAME"])
            for alias in activation.aliases
        }
        with unflushed(activation.aliases if transactional else set()):
            yield served
    finally:
        with django_db_blocker.unblock():
            try:
                if activation.reload:
                    activation.restore()
            finally:
                activation.stop()


def _start(
    names: tuple[str, ...],
    reload: bool,
    transactional: bool,
    databases: Any,
    blocker: Any,
) -> Activation:
    """Point the templates' aliases at this process's clones."""
    from testbed._activation import Activation, template_names
    from testbed._config import template
    from testbed._settings import ConfigurationError

    names = template_names(names, where=f"@pytest.mark.{MARKER}()")
    allowed = _allowed_aliases(databases)
    for name in names:
        missing = [
            a
            for a in template(name).aliases
            if allowed is not None and a not in allowed
        ]
        if missing:
            raise ConfigurationError(
                f"Template {name!r} serves database alias(es) "
                f"{', '.join(map(repr, missing))}, which this test's django_db "
                "marker does not allow; add databases=[...] with them to "
                "@pytest.mark.django_db."
            )
    activation = Activation(names, reload=transactional and reload)
    with blocker.unblock():
        activation.start()
    return activation


def _allowed_aliases(databases: Any) -> set[str] | None:
    """The aliases a django_db ``databases`` value allows; None for all."""
    if databases == "__all__":
        return None
    if databases is None:
        return {"default"}
    return set(databases)
