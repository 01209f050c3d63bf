"""The end of a test session, registered as a plugin only with pytest-django,
whose ``django_db_blocker`` fixture it needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testbed.pytest_plugin._setup import active


@pytest.fixture(autouse=True, scope="session")
def _testbed_session(
    request: pytest.FixtureRequest, django_db_blocker: Any
) -> Iterator[None]:
    """testbed's end of the session: drops this process's template clones
    and stand-in databases, and lets go of the test databases it holds."""
    yield
    if not active(request.config):
        return
    from testbed import _clones, _reset, _testdb

    # After pytest-django's own teardown, which blocks database access
    # again: testbed's clean-up needs it.
    with django_db_blocker.unblock():
        _reset.settle_all()
        _reset.release_all()
        _clones.drop_working_clones()
        _testdb.release_all()
