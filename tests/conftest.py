from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

VENDORS = ("sqlite", "postgresql", "mysql")
# The alias of each vendor in tests/settings.py.
ALIAS = {"sqlite": "default", "postgresql": "postgresql", "mysql": "mysql"}

_HOW_TO_START = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mysql": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}
_unreachable: dict[str, str | None] = {}
_names = itertools.count()


def server_problem(vendor: str) -> str | None:
    """Why ``vendor``'s server cannot be used, or None if it can."""
    if vendor == "sqlite":
        return None
    if vendor not in _unreachable:
        from tests import settings

        db = settings.DATABASES[ALIAS[vendor]]
        try:
            if vendor == "postgresql":
                import psycopg

                psycopg.connect(
                    host=db["HOST"],
                    port=db["PORT"],
                    user=db["USER"],
                    password=db["PASSWORD"],
                    dbname="postgres",
                    connect_timeout=3,
                ).close()
            else:
                import MySQLdb

                MySQLdb.connect(
                    host=db["HOST"],
                    port=int(str(db["PORT"])),
                    user=db["USER"],
                    password=db["PASSWORD"],
                    connect_timeout=3,
                ).close()
        except Exception as exc:
            _unreachable[vendor] = (
                f"{vendor} server at {db['HOST']}:{db['PORT']} is unreachable "
                f"({exc}). Start it with: {_HOW_TO_START[vendor]}"
            )
        else:
            _unreachable[vendor] = None
    return _unreachable[vendor]


def pytest_sessionstart(session: pytest.Session) -> None:
    # In CI a missing server must fail the run, not quietly skip a third of it.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        problems = [p for v in VENDORS if (p := server_problem(v))]
        if problems:
            raise pytest.UsageError("CI=true and " + "; ".join(problems))


def require_vendor(vendor: str) -> None:
    """Skip the calling test if ``vendor``'s server is down (outside CI)."""
    __tracebackhide__ = True
    problem = server_problem(vendor)
    if problem:
        pytest.skip(problem)


def unique_db_name(prefix: str = "test_tb") -> str:
    """A database name no other test, or concurrent test run, uses."""
    return f"{prefix}_{os.getpid()}_{next(_names)}"


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    """Each database vendor in turn, skipped (outside CI) if its server is down."""
    require_vendor(request.param)
    return str(request.param)


@pytest.fixture
def test_settings(vendor: str, tmp_path: Path) -> dict[str, Any]:
    """A normalised ``DATABASES`` entry for ``vendor`` whose NAME is a fresh,
    unused test database name (a file in ``tmp_path`` on SQLite)."""
    from django.db import connections

    base = dict(connections.settings[ALIAS[vendor]])
    name = unique_db_name()
    if vendor == "sqlite":
        name = str(tmp_path / f"{name}.sqlite3")
    base["NAME"] = name
    base["TEST"] = {**base["TEST"], "NAME": name}
    return base


@pytest.fixture
def engine(test_settings: dict[str, Any], vendor: str) -> Iterator[Any]:
    """The clone engine for ``vendor``. Every database it created whose
    name starts with the test database name is dropped afterwards."""
    from testbed._engines import engine_for

    eng = engine_for(test_settings, ALIAS[vendor])
    yield eng
    eng.close()
    for info in eng.list_databases(eng.base_name):
        eng._drop(info.name)
    eng.close()


@pytest.fixture(autouse=True)
def _db_access(django_db_blocker: Any) -> Iterator[None]:
    # testbed's tests open their own connections to databases they create;
    # pytest-django's blocker is for the projects testbed serves.
    with django_db_blocker.unblock():
        yield


@pytest.fixture(params=["databases", "shared-engine"])
def db_alias(
    request: pytest.FixtureRequest,
    engine: Any,
    test_settings: dict[str, Any],
    vendor: str,
) -> Iterator[str]:
    """A DATABASES alias on a new database of ``vendor`` holding one table,
    ``item (id, name)``: on the vendor's own ENGINE, then on
    testbed.backends.shared. The database is dropped afterwards."""
    from django.db import connections

    from testbed import patch_databases

    engine.create_empty(engine.base_name, '"testbed test database"')
    alias = f"tb_{vendor}_{os.getpid()}_{next(_names)}"
    entry = {**test_settings, "NAME": engine.base_name}
    if request.param == "shared-engine":
        entry = patch_databases({alias: entry})[alias]
    connections.settings[alias] = entry
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "CREATE TABLE item (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL)"
        )
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]
        del connections.settings[alias]
