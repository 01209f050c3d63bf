"""The one guard: testbed drops, alters and restores only what it created."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pytest
from django.db import connections

from testbed import _safety
from testbed._config import TemplateSpec
from testbed._safety import CLONE, TEST, Mark, UnsafeOperation
from testbed._settings import ConfigurationError


def _mark(name: str, **kwargs: Any) -> str:
    fields: dict[str, Any] = {
        "name": name,
        "kind": CLONE,
        "template": "t",
        "fingerprint": "f" * 64,
        "base": "b",
    }
    fields.update(kwargs)
    return Mark(**fields).dumps()


def _create_foreign(engine: Any, name: str) -> None:
    """A database made by someone else: no testbed mark."""
    if engine.vendor == "sqlite":
        import sqlite3

        sqlite3.connect(name).close()
        return
    wrapper = engine.connect(name)
    with wrapper._nodb_cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {wrapper.ops.quote_name(name)}")


def _drop_foreign(engine: Any, name: str) -> None:
    if engine.exists(name):
        engine._drop(name)


def test_drops_a_database_it_created(engine: Any) -> None:
    name = engine.derive_name("tbc_mine_1", persistent=False)
    engine.create_empty(name, _mark(name))
    _safety.drop(engine, name)
    assert not engine.exists(name)


def test_refuses_a_database_without_a_mark(engine: Any) -> None:
    name = engine.derive_name("tbc_foreign", persistent=True)
    _create_foreign(engine, name)
    try:
        with pytest.raises(UnsafeOperation) as excinfo:
            _safety.drop(engine, name)
        assert excinfo.value.args == (
            f"testbed refuses to drop database {name!r}: it carries no testbed "
            "ownership mark, so testbed did not create it. Remove it yourself "
            "if it is really disposable.",
        )
        assert engine.exists(name)
    finally:
        _drop_foreign(engine, name)


def test_refuses_a_database_whose_mark_names_another(engine: Any) -> None:
    name = engine.derive_name("tbc_copied", persistent=True)
    engine.create_empty(name, _mark("somewhere_else"))
    try:
        with pytest.raises(
            UnsafeOperation, match="its ownership mark names 'somewhere_else'"
        ):
            _safety.drop(engine, name)
        with pytest.raises(UnsafeOperation, match="refuses to restore tables of"):
            _safety.reset(engine, name, "any")
        assert engine.exists(name)
    finally:
        _drop_foreign(engine, name)


def test_refuses_a_mark_that_is_not_testbeds(engine: Any) -> None:
    name = engine.derive_name("tbc_comment", persistent=True)
    engine.create_empty(name, "a comment someone wrote")
    try:
        with pytest.raises(UnsafeOperation, match="carries no testbed ownership mark"):
            _safety.drop(engine, name)
    finally:
        _drop_foreign(engine, name)


@pytest.mark.parametrize("name", ["", "   "])
def test_refuses_an_empty_name(engine: Any, name: str) -> None:
    with pytest.raises(UnsafeOperation) as excinfo:
        _safety.drop(engine, name)
    assert excinfo.value.args == (
        "testbed refuses to drop a database with an empty name. Check NAME "
        "and TEST['NAME'] in DATABASES.",
    )


def test_refuses_a_configured_database_even_if_marked(engine: Any) -> None:
    # A hostile set-up: a configured database that carries a valid mark.
    configured = str(connections.settings["default"]["NAME"])
    with pytest.raises(UnsafeOperation) as excinfo:
        _safety.check_owned(engine, configured, action="drop")
    assert excinfo.value.args == (
        f"testbed refuses to drop database {configured!r}: it is configured "
        "in DATABASES (as NAME or TEST['NAME']), and testbed only touches "
        "databases it created itself.",
    )


def test_marks_round_trip() -> None:
    mark = Mark(name="n", kind=CLONE, template="t", fingerprint="f", base="b")
    assert Mark.loads(mark.dumps()) == mark
    assert Mark.loads(None) is None
    assert Mark.loads("") is None
    assert Mark.loads("[1, 2]") is None
    assert Mark.loads('{"testbed": 99}') is None
    assert Mark.loads('{"testbed": 1, "surprise": 1}') is None


def test_slug_keeps_distinct_names_distinct() -> None:
    assert _safety.slug("integration") == "integration"
    assert _safety.slug("Big Data!") != _safety.slug("big_data")
    assert len(_safety.slug("x" * 100)) == 24


# --- hostile settings ----------------------------------------------------------


def _spec(source: str) -> TemplateSpec:
    return TemplateSpec(
        name="legacy", alias=source, source=source, setting="settings.TTDB"
    )


def test_source_whose_test_name_is_its_name_is_refused() -> None:
    from testbed import _config
    from testbed._templates import _source_settings

    hostile = {"legacy": {"ENGINE": "x", "NAME": "prod", "TEST": {"NAME": "prod"}}}
    original = _config._original
    _config._original = hostile
    try:
        with pytest.raises(ConfigurationError) as excinfo:
            _source_settings(_spec("legacy"))
    finally:
        _config._original = original
    assert excinfo.value.args == (
        "DATABASES['legacy']['TEST']['NAME'] equals its NAME 'prod': a test run "
        "would replace the database that template 'legacy' copies from "
        "(settings.TTDB). Give TEST['NAME'] a different name.",
    )


def test_source_with_an_empty_name_is_refused() -> None:
    from testbed import _config
    from testbed._templates import _source_settings

    original = _config._original
    _config._original = {"legacy": {"ENGINE": "x", "NAME": "", "TEST": {}}}
    try:
        with pytest.raises(
            ConfigurationError, match=r"has an empty NAME, but settings\.TTDB"
        ):
            _source_settings(_spec("legacy"))
    finally:
        _config._original = original


def test_alias_with_an_empty_name_is_refused() -> None:
    from testbed._templates import base_settings

    entry = connections.configure_settings(
        {
            "default": {},
            "hostile": {"ENGINE": "django.db.backends.postgresql", "NAME": ""},
        }
    )["hostile"]
    connections.settings["hostile"] = entry
    try:
        with pytest.raises(ConfigurationError) as excinfo:
            base_settings("hostile")
    finally:
        del connections.settings["hostile"]
        with contextlib.suppress(AttributeError):
            del connections["hostile"]
    assert excinfo.value.args == (
        "DATABASES['hostile'] has an empty NAME, so testbed cannot derive "
        "its test database name. Set NAME (or TEST['NAME']).",
    )


@pytest.mark.parametrize(
    ("alias", "name", "message"),
    [
        (
            "default",
            "prod",
            "DATABASES['default']['TEST']['NAME'] equals its NAME 'prod': a test "
            "run would replace that database. Give "
            "DATABASES['default']['TEST']['NAME'] a name of its own.",
        ),
        (
            "other",
            "prod",
            "The test database of DATABASES['other'] is named like the NAME of "
            "DATABASES['default'] 'prod': a test run would replace that database. "
            "Give DATABASES['other']['TEST']['NAME'] a name of its own.",
        ),
        (
            "default",
            " ",
            "DATABASES['default'] gives an empty test database name. Set NAME "
            "(or TEST['NAME']).",
        ),
    ],
)
def test_test_database_named_like_a_real_one_is_refused(
    alias: str, name: str, message: str
) -> None:
    from testbed import _config

    original = _config._original
    _config._original = {
        "default": {"NAME": "prod", "TEST": {"NAME": "prod"}},
        "other": {"NAME": "other", "TEST": {"NAME": "prod"}},
    }
    try:
        with pytest.raises(UnsafeOperation) as excinfo:
            _safety.check_test_name(alias, name)
    finally:
        _config._original = original
    assert excinfo.value.args == (message,)


def test_test_database_of_testbed_under_a_configured_test_name(engine: Any) -> None:
    """A configured TEST['NAME'] is dropped only if testbed made it as a test
    database; a clone or template mark under that name is refused."""
    from testbed import _config

    name = engine.base_name
    original = _config._original
    _config._original = {"default": {"NAME": "real", "TEST": {"NAME": name}}}
    try:
        engine.create_empty(name, _mark(name))
        with pytest.raises(UnsafeOperation, match="it is configured in DATABASES"):
            _safety.drop(engine, name)
        engine.write_mark(name, _mark(name, kind=TEST))
        _safety.drop(engine, name)
        assert not engine.exists(name)
    finally:
        _config._original = original
        _drop_foreign(engine, name)


def test_in_memory_names_are_no_conflict() -> None:
    """pytest-django's own test settings name a mirror's database like the
    primary's in-memory test database: nothing on disk, nothing replaced."""
    from testbed import _config

    memory = "file:memorydb_default?mode=memory&cache=shared"
    original = _config._original
    _config._original = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "replica": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": memory,
            "TEST": {"MIRROR": "default"},
        },
    }
    try:
        _safety.check_test_name("default", memory)
    finally:
        _config._original = original


@pytest.mark.parametrize(
    ("other", "test_name"),
    [
        # The same server under another address: testbed cannot tell.
        ({"ENGINE": "django.db.backends.postgresql", "HOST": "127.0.0.1"}, "shop"),
        # Wrapped by the shared engine, still PostgreSQL.
        (
            {
                "ENGINE": "testbed.backends.shared",
                "INNER_ENGINE": "django.db.backends.postgresql",
            },
            "shop",
        ),
    ],
)
def test_a_real_name_on_what_may_be_the_same_server_is_refused(
    other: dict[str, Any], test_name: str
) -> None:
    from testbed import _config

    original = _config._original
    _config._original = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": "localhost",
            "NAME": "shop",
        },
        "analytics": {**other, "NAME": "analytics", "TEST": {"NAME": test_name}},
    }
    try:
        with pytest.raises(UnsafeOperation, match="is named like the NAME of"):
            _safety.check_test_name("analytics", test_name)
    finally:
        _config._original = original


def test_a_relative_sqlite_path_to_the_real_file_is_refused(tmp_path: Any) -> None:
    from testbed import _config

    real = tmp_path / "db.sqlite3"
    original = _config._original
    _config._original = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": real},
        "other": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": tmp_path / "other.sqlite3",
            "TEST": {"NAME": "db.sqlite3"},
        },
    }
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(UnsafeOperation, match="is named like the NAME of"):
            _safety.check_test_name("other", "db.sqlite3")
    finally:
        os.chdir(cwd)
        _config._original = original
