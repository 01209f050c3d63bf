"""Where Django's test cases meet testbed's transactional reset (``_reset``).

Django's own code keeps running; testbed answers a few of its calls:

- ``TransactionTestCase._fixture_teardown`` calls ``call_command("flush",
  ...)`` (the name ``django.test.testcases`` imported): during a test's
  ``_post_teardown`` that flush is ``_reset.flush`` instead.
- ``deserialize_db_from_string`` of the stand-in testbed put where Django's
  serialized contents go restores the migrated state from its baseline;
  ``serialize_db_to_string`` during the runner's set-up returns that
  stand-in for the test databases testbed cloned.
- Before ``TransactionTestCase._pre_setup`` and ``TestCase._enter_atomics``,
  tables a serialized test's flush left holding the migrated state are
  emptied (``_reset.settle``), unless the test is itself serialized.

Anything else (a test that mocks ``call_command``, a flush called outside a
test's teardown) reaches Django unchanged. Nothing is patched under
``TESTBED["TRANSACTIONAL_RESET"] = "flush"``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from testbed import _reset, _testdb
from testbed._stats import stats

_current_test: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "testbed_current_test", default=None
)
_lock = threading.Lock()
_installed = 0
_originals: dict[str, Any] = {}


def _call_command(command_name: Any, *args: Any, **options: Any) -> Any:
    test = _current_test.get()
    if (
        test is not None
        and command_name == "flush"
        and not args
        and options.get("reset_sequences") is False
        and options.get("interactive") is False
        and "database" in options
    ):
        if _reset.flush(
            test,
            options["database"],
            allow_cascade=bool(options.get("allow_cascade")),
            inhibit_post_migrate=bool(options.get("inhibit_post_migrate")),
        ):
            return None
        stats.resets_flushed += 1
    return _originals["call_command"](command_name, *args, **options)


def _post_teardown(self: Any) -> None:
    token = _current_test.set(self)
    try:
        _originals["_post_teardown"](self)
    finally:
        _current_test.reset(token)


def _serialized_aliases(cls: Any) -> set[str]:
    """The aliases whose next test loads the migrated state anyway."""
    from django.db import connections

    if not getattr(cls, "serialized_rollback", False):
        return set()
    return {
        alias
        for alias in cls._databases_names(include_mirrors=False)
        if isinstance(
            getattr(connections[alias], "_test_serialized_contents", None),
            _reset.SerializedBaseline,
        )
    }


def _pre_setup(cls: Any) -> None:
    _reset.settle(
        cls._databases_names(include_mirrors=False),
        serialized=_serialized_aliases(cls),
    )
    _originals["_pre_setup"].__func__(cls)


def _enter_atomics(cls: Any) -> Any:
    _reset.settle(cls._databases_names(include_mirrors=False))
    return _originals["_enter_atomics"].__func__(cls)


def _deserialize_db_from_string(self: Any, data: Any) -> None:
    if isinstance(data, _reset.SerializedBaseline):
        _reset.restore_serialized(self.connection, data)
        return
    _originals["deserialize_db_from_string"](self, data)


def _serialize_db_to_string(self: Any) -> Any:
    found = _testdb.serialized_baseline(self.connection)
    if found is not None:
        return found
    return _originals["serialize_db_to_string"](self)


def _patches() -> list[tuple[Any, str, Any]]:
    import django.test.testcases
    from django.db.backends.base.creation import BaseDatabaseCreation
    from django.test import TestCase, TransactionTestCase

    return [
        (django.test.testcases, "call_command", _call_command),
        (TransactionTestCase, "_post_teardown", _post_teardown),
        (TransactionTestCase, "_pre_setup", classmethod(_pre_setup)),
        (TestCase, "_enter_atomics", classmethod(_enter_atomics)),
        (
            BaseDatabaseCreation,
            "deserialize_db_from_string",
            _deserialize_db_from_string,
        ),
        (BaseDatabaseCreation, "serialize_db_to_string", _serialize_db_to_string),
    ]


def install() -> None:
    """Answer Django's flush and serialization from now on (nestable); does
    nothing under ``TESTBED["TRANSACTIONAL_RESET"] = "flush"``."""
    global _installed
    if _reset.mode() == "flush":
        return
    with _lock:
        _installed += 1
        if _installed > 1:
            return
        for owner, name, replacement in _patches():
            _originals[name] = owner.__dict__[name]
            setattr(owner, name, replacement)


def uninstall() -> None:
    global _installed
    with _lock:
        if _installed == 0:
            return
        _installed -= 1
        if _installed:
            return
        for owner, name, _ in _patches():
            setattr(owner, name, _originals.pop(name))
