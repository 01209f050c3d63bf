"""testbed.backends.shared: the inner engine's behaviour outside tests, the
settings it takes, its errors; and patch_databases()."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.db.utils import ConnectionHandler, load_backend

from testbed import patch_databases
from testbed._engines import vendor_of
from testbed._sharing import shared

SHARED = "testbed.backends.shared"
INNER = {
    "sqlite": "django.db.backends.sqlite3",
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
}


@pytest.fixture
def shared_alias(db_alias: str) -> str:
    """``db_alias`` on the shared engine only."""
    return db_alias


on_the_shared_engine = pytest.mark.parametrize(
    "db_alias", ["shared-engine"], indirect=True
)


# --- patch_databases ---------------------------------------------------------------


DATABASES: dict[str, dict[str, Any]] = {
    "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app"},
    "replica": {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "TEST": {}},
    "cache": {"ENGINE": "django.db.backends.sqlite3", "NAME": "cache.sqlite3"},
}


def test_patch_databases_wraps_each_engine() -> None:
    patched = patch_databases(DATABASES)
    assert patched == {
        "default": {
            "ENGINE": SHARED,
            "INNER_ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
        },
        "replica": {
            "ENGINE": SHARED,
            "INNER_ENGINE": "django.db.backends.postgresql",
            "NAME": "app",
            "TEST": {},
        },
        "cache": {
            "ENGINE": SHARED,
            "INNER_ENGINE": "django.db.backends.sqlite3",
            "NAME": "cache.sqlite3",
        },
    }
    # The setting itself is left alone; wrapping twice changes nothing.
    assert DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert patched["replica"]["TEST"] is not DATABASES["replica"]["TEST"]
    assert patch_databases(patched) == patched


def test_patch_databases_whitelist_and_blacklist() -> None:
    only = patch_databases(
        DATABASES, whitelist=("default", "cache"), blacklist=["cache"]
    )
    assert [a for a, e in only.items() if e["ENGINE"] == SHARED] == ["default"]
    but = patch_databases(DATABASES, blacklist={"replica"})
    assert [a for a, e in but.items() if e["ENGINE"] == SHARED] == ["default", "cache"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"whitelist": "default"},
            TypeError,
            "patch_databases(whitelist=...) takes a collection of DATABASES "
            "aliases, such as ('default',), not 'default'.",
        ),
        (
            {"blacklist": ("default", "nope", "other")},
            ValueError,
            "patch_databases(blacklist=...) names 'nope', 'other', not in "
            "DATABASES (aliases: 'default', 'replica', 'cache').",
        ),
    ],
)
def test_patch_databases_bad_aliases(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as excinfo:
        patch_databases(DATABASES, **kwargs)
    assert excinfo.value.args == (message,)


def test_patch_databases_needs_an_engine() -> None:
    with pytest.raises(ValueError, match="has no ENGINE") as excinfo:
        patch_databases({"default": {"NAME": "x"}})
    assert excinfo.value.args == (
        "patch_databases() cannot wrap DATABASES['default']: it has no ENGINE. "
        "Set ENGINE to a Django backend, or leave the alias out with blacklist=.",
    )


# --- the wrapper -------------------------------------------------------------------


@on_the_shared_engine
def test_a_connection_of_the_inner_engine(shared_alias: str, vendor: str) -> None:
    conn = connections[shared_alias]
    inner = load_backend(INNER[vendor]).DatabaseWrapper
    shared_class = load_backend(SHARED).DatabaseWrapper
    assert isinstance(conn, inner)
    assert isinstance(conn, shared_class)
    assert issubclass(type(conn), shared_class)
    assert not isinstance(object(), shared_class)
    assert conn.vendor == inner.vendor == vendor
    assert type(conn).features_class is inner.features_class
    assert type(conn).creation_class is inner.creation_class
    assert repr(conn) == f"<DatabaseWrapper vendor={vendor!r} alias={shared_alias!r}>"
    assert type(conn.copy()) is type(conn)
    assert vendor_of(conn.settings_dict) == vendor
    with conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM item")
        assert cursor.fetchone() == (0,)


@on_the_shared_engine
def test_outside_tests_each_thread_has_its_own_connection(shared_alias: str) -> None:
    mine = connections[shared_alias]
    theirs: list[Any] = []

    def write() -> None:
        conn = connections[shared_alias]
        theirs.append(conn)
        with conn.cursor() as cursor:
            cursor.execute("INSERT INTO item (id, name) VALUES (1, 'autocommit')")
        conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    with mine.cursor() as cursor:  # committed by the other thread
        cursor.execute("SELECT name FROM item")
        assert list(cursor.fetchall()) == [("autocommit",)]
    with transaction.atomic(using=shared_alias):
        assert not shared(mine)


@on_the_shared_engine
def test_shared_while_a_testcase_transaction_is_open(shared_alias: str) -> None:
    conn = connections[shared_alias]
    outer = transaction.atomic(using=shared_alias)
    outer._from_testcase = True  # type: ignore[attr-defined]
    with outer:
        assert shared(conn)
        inner = transaction.atomic(using=shared_alias)
        inner._from_testcase = True  # type: ignore[attr-defined]
        with inner:  # a test's block inside the class's
            assert shared(conn)
        assert shared(conn)
        transaction.set_rollback(True, using=shared_alias)
    assert not shared(conn)
    assert not conn.allow_thread_sharing


@on_the_shared_engine
def test_a_connection_rebuilt_from_engine_alone(shared_alias: str, vendor: str) -> None:
    # As Django's own test suite does: a settings entry with ENGINE only.
    entry = {
        key: value
        for key, value in connections[shared_alias].settings_dict.items()
        if key != "INNER_ENGINE"
    }
    handler = ConnectionHandler({"default": entry})
    conn = handler["default"]
    try:
        assert conn.vendor == vendor
        with conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM item")
    finally:
        conn.close()
    # Class attributes are the (one) inner engine's too.
    assert load_backend(SHARED).DatabaseWrapper.vendor == vendor


def test_engine_alone_with_nothing_to_go_by() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        load_backend(SHARED).DatabaseWrapper({"ENGINE": SHARED, "NAME": "x"}, "lone")
    assert excinfo.value.args == (
        "DATABASES['lone'] uses ENGINE 'testbed.backends.shared' without "
        "INNER_ENGINE, and no DATABASES entry names one. Set INNER_ENGINE to "
        "the Django backend it wraps, such as 'django.db.backends.postgresql', "
        "or build DATABASES with testbed.patch_databases(DATABASES).",
    )
    with pytest.raises(AttributeError) as attr_excinfo:
        load_backend(SHARED).DatabaseWrapper.vendor  # noqa: B018
    assert str(attr_excinfo.value).startswith(
        "A DATABASES entry uses ENGINE 'testbed.backends.shared' without INNER_ENGINE"
    )


def test_engine_alone_when_several_inner_engines_are_wrapped() -> None:
    patched = patch_databases(
        {
            "one": {"ENGINE": "django.db.backends.sqlite3", "NAME": "a.sqlite3"},
            "two": {"ENGINE": "django.db.backends.postgresql", "NAME": "b"},
        }
    )
    connections.settings.update(patched)
    try:
        with pytest.raises(ImproperlyConfigured) as excinfo:
            load_backend(SHARED).DatabaseWrapper({"ENGINE": SHARED}, "three")
        # The alias's own entry still says which.
        conn = load_backend(SHARED).DatabaseWrapper({"ENGINE": SHARED}, "one")
        assert conn.vendor == "sqlite"
    finally:
        for alias in patched:
            del connections.settings[alias]
    assert excinfo.value.args == (
        "DATABASES['three'] uses ENGINE 'testbed.backends.shared' without "
        "INNER_ENGINE, and DATABASES wraps several ('django.db.backends.postgresql', "
        "'django.db.backends.sqlite3'), so testbed cannot tell which one. Set "
        "INNER_ENGINE to the Django backend it wraps, such as "
        "'django.db.backends.postgresql', or build DATABASES with "
        "testbed.patch_databases(DATABASES).",
    )


@pytest.mark.parametrize(
    ("inner", "message"),
    [
        (
            "django.db.backends.nope",
            "DATABASES['default']['INNER_ENGINE'] is 'django.db.backends.nope', which "
            "isn't an available database backend (see the error above). Set it to "
            "the Django backend the shared engine wraps, such as "
            "'django.db.backends.postgresql'.",
        ),
        (
            SHARED,
            "DATABASES['default']['INNER_ENGINE'] is 'testbed.backends.shared' "
            "itself; set it to the Django backend the shared engine wraps, such as "
            "'django.db.backends.postgresql'.",
        ),
    ],
)
def test_an_inner_engine_that_does_not_exist(inner: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        load_backend(SHARED).DatabaseWrapper(
            {"ENGINE": SHARED, "INNER_ENGINE": inner, "NAME": "x"}, "default"
        )
    assert excinfo.value.args == (message,)
    if inner != SHARED:
        # Django's own error, which names the backends there are, comes first.
        assert isinstance(excinfo.value.__cause__, ImproperlyConfigured)
        assert "isn't an available database backend" in str(excinfo.value.__cause__)
