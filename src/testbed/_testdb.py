"""Test databases as clones of a schema template: reuse that notices change.

Django makes a test database by migrating an empty one, and with keepdb it
reuses whatever it finds, migrating only what ``django_migrations`` does not
list: an edited migration, a branch switch or a model change under
``--nomigrations`` goes unnoticed, and ``--parallel`` clones go stale.

Here each alias's schema is built once per fingerprint as a template (see
``testbed._templates.schema_spec``), and every test database (the main one,
an xdist worker's, a ``--parallel`` clone) is a clone of it whose mark
records that fingerprint. A kept test database is reused only while its
mark matches; otherwise it is replaced, with a line that says why.

While ``install()`` is in effect, Django's ``create_test_db``,
``clone_test_db`` and ``destroy_test_db`` come here for the vendors testbed
has engines for. Test databases testbed did not make are left to Django.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from testbed import _clones, _safety, _templates
from testbed._engines import Engine, engine_for
from testbed._safety import TEST, Mark
from testbed._stats import note, stats, timed

_VENDORS = ("sqlite", "postgresql", "mysql")

# Outcomes of looking at an existing name.
_ABSENT, _CURRENT, _OUTDATED, _FOREIGN = "absent", "current", "outdated", "foreign"


@dataclass
class _Managed:
    """A test database this process made or reused."""

    name: str
    engine: Engine
    template: _templates.Template
    # A stand-in for a name another test run holds: never kept.
    stand_in: bool = False
    locks: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


_managed: dict[str, _Managed] = {}
# --parallel clones made (or found current) ahead of Django's one-by-one
# calls, each with what happened to it.
_prepared: dict[str, str] = {}
_expected_clones = 0
_originals: dict[str, Callable[..., Any]] = {}
_installed = 0
_lock = threading.RLock()
# Clones are made from several threads at once (_prepare_clones).
_counting = threading.Lock()
# What forked children inherited: referenced, never closed (see _templates).
_inherited: list[Any] = []


def _signature(method: str) -> inspect.Signature:
    return inspect.signature(_originals[method])


def _bind(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = _signature(method).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _handles(connection: Any) -> bool:
    return connection.vendor in _VENDORS


def _is_memory(name: str) -> bool:
    return name == ":memory:" or "mode=memory" in name


# --- the hooks ------------------------------------------------------------------


def _create_test_db(*args: Any, **kwargs: Any) -> Any:
    original = _originals["create_test_db"]
    call = _bind("create_test_db", args, kwargs)
    creation = call["self"]
    connection = creation.connection
    if not _handles(connection):
        return original(*args, **kwargs)
    with _lock, timed():
        return _create(creation, call, original, args, kwargs)


def _create(
    creation: Any,
    call: dict[str, Any],
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> str:

    connection = creation.connection
    alias = connection.alias
    verbosity, keepdb = call.get("verbosity", 1), bool(call.get("keepdb"))
    name = creation._get_test_db_name()
    _safety.check_test_name(alias, name)
    # As Django's create_test_db reports migrate: one level lower.
    _templates.migrate_verbosity = max(verbosity - 1, 0)
    built = _templates.template(_templates.schema_spec(alias))
    engine = built.engine
    locks = contextlib.ExitStack()
    name, stand_in = _claim(engine, name, locks)
    state, why = _state(engine, name, built)
    if state == _FOREIGN:
        locks.close()
        return str(
            _leave_to_django(creation, name, keepdb, built, original, args, kwargs)
        )
    reuse = state == _CURRENT and keepdb
    if reuse:
        stats.databases_reused += 1
    elif state == _OUTDATED and keepdb:
        note(f"recreating test database {name!r} ({why})")
    if verbosity >= 1:
        # Django's own words: logs and scripts look for them.
        action = "Using existing" if reuse else "Creating"
        display = creation._get_database_display_str(verbosity, name)
        creation.log(f"{action} test database for alias {display}...")
    if not reuse:
        _fresh_clone(engine, name, built, exists=state != _ABSENT)
    _managed[name] = _Managed(name, engine, built, stand_in, locks)
    connection.close()
    _rename(connection, name)
    if call.get("serialize") is True:
        connection._test_serialized_contents = creation.serialize_db_to_string()
    connection.ensure_connection()
    return name


def expect_clones(count: int) -> None:
    """Django's runner is about to ask for ``count`` clones of each test
    database (``--parallel``): engines that gain make them all at once."""
    global _expected_clones
    _expected_clones = count


def _clone_test_db(*args: Any, **kwargs: Any) -> Any:
    original = _originals["clone_test_db"]
    call = _bind("clone_test_db", args, kwargs)
    creation = call["self"]
    source = _managed.get(creation.connection.settings_dict["NAME"])
    if source is None or _is_memory(source.name):
        # Not testbed's, or in memory: Django's own copy is exact.
        return original(*args, **kwargs)
    with _lock, timed():
        verbosity, keepdb = call.get("verbosity", 1), bool(call.get("keepdb"))
        target = creation.get_test_db_clone_settings(call["suffix"])["NAME"]
        if (
            target not in _prepared
            and _expected_clones > 1
            and source.engine.parallel_clones
        ):
            _prepare_clones(creation, source, keepdb)
        outcome = _prepared.pop(target, None) or _clone_one(source, target, keepdb)
        if outcome == _FOREIGN:
            return original(*args, **kwargs)
        if verbosity >= 1:
            action = (
                "Using existing clone"
                if outcome == _CURRENT
                else "Cloning test database"
            )
            # Django names the source, as its own clone_test_db does.
            display = creation._get_database_display_str(verbosity, source.name)
            creation.log(f"{action} for alias {display}...")
        _managed[target] = _Managed(
            target, source.engine, source.template, source.stand_in
        )
        return None


def _clone_one(
    source: _Managed, target: str, keepdb: bool, engine: Engine | None = None
) -> str:
    """Make ``target`` a current clone of ``source``'s template, reusing it
    if ``keepdb`` allows; returns what it found (current, or foreign)."""
    engine = engine or source.engine
    state, why = _state(engine, target, source.template)
    if state == _FOREIGN:
        return _FOREIGN
    if state == _CURRENT and keepdb:
        with _counting:
            stats.databases_reused += 1
        return _CURRENT
    if state == _OUTDATED and keepdb:
        note(f"recreating test database {target!r} ({why})")
    _fresh_clone(engine, target, source.template, exists=state != _ABSENT)
    return _ABSENT


def _prepare_clones(creation: Any, source: _Managed, keepdb: bool) -> None:
    """Every clone Django will ask for, made at once, each over its own
    connections."""
    from concurrent.futures import ThreadPoolExecutor

    targets = [
        creation.get_test_db_clone_settings(str(index))["NAME"]
        for index in range(1, _expected_clones + 1)
    ]
    engines = [engine_for(source.engine.settings, source.engine.alias) for _ in targets]
    try:
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            outcomes = pool.map(
                lambda pair: _clone_one(source, pair[0], keepdb, pair[1]),
                zip(targets, engines, strict=True),
            )
            _prepared.update(zip(targets, outcomes, strict=True))
    finally:
        for engine in engines:
            engine.close()


def _destroy_test_db(*args: Any, **kwargs: Any) -> Any:

    original = _originals["destroy_test_db"]
    call = _bind("destroy_test_db", args, kwargs)
    creation = call["self"]
    connection = creation.connection
    suffix = call.get("suffix")
    if suffix is None:
        name = connection.settings_dict["NAME"]
    else:
        name = creation.get_test_db_clone_settings(suffix)["NAME"]
    with _lock:
        managed = _managed.pop(name, None)
    if managed is None:
        return original(*args, **kwargs)
    with timed():
        connection.close()
        keep = (
            bool(call.get("keepdb")) and not managed.stand_in and not _is_memory(name)
        )
        if call.get("verbosity", 1) >= 1:
            action = "Preserving" if keep else "Destroying"
            display = creation._get_database_display_str(call.get("verbosity", 1), name)
            creation.log(f"{action} test database for alias {display}...")
        try:
            if not keep:
                _safety.drop(managed.engine, name)
        finally:
            managed.locks.close()
        old_name = call.get("old_database_name")
        if old_name is not None:
            _rename(connection, old_name)
    return None


# --- helpers ---------------------------------------------------------------------------


def _rename(connection: Any, name: str) -> None:
    """Point the alias at ``name`` in settings and connection, as Django does."""
    from django.conf import settings

    databases = cast(dict[str, dict[str, Any]], settings.DATABASES)
    databases[connection.alias]["NAME"] = name
    connection.settings_dict["NAME"] = name


def _claim(engine: Engine, name: str, locks: contextlib.ExitStack) -> tuple[str, bool]:
    """``name``, held for this process; or a stand-in if another run holds it.

    Two test runs against one server would otherwise drop each other's
    test database.
    """
    if _is_memory(name):
        return name, False
    try:
        locks.enter_context(engine.lock(f"testbed-use:{name}", 0))
        return name, False
    except TimeoutError:
        pass
    stand_in = _derive(engine, name, f"tbs_{_clones.TOKEN}")
    locks.enter_context(engine.lock(f"testbed-use:{stand_in}", 0))
    note(
        f"test database {name!r} is in use by another test run; this run uses {stand_in!r}"
    )
    return stand_in, True


def _derive(engine: Engine, name: str, suffix: str) -> str:
    """A name for ``suffix`` derived from the test database ``name``."""
    return engine_for({**engine.settings, "NAME": name}, engine.alias).derive_name(
        suffix, persistent=True
    )


def _state(engine: Engine, name: str, built: _templates.Template) -> tuple[str, str]:
    """Whether ``name`` is absent, a current or outdated test database of
    testbed's, or someone else's; and, if outdated, why."""
    if not engine.exists(name):
        return _ABSENT, ""
    mark = Mark.loads(engine.read_mark(name))
    if mark is None or mark.name != name or mark.kind != TEST:
        return _FOREIGN, ""
    if not mark.complete:
        return _OUTDATED, "an earlier clone of it was cut short"
    if mark.fingerprint != built.fingerprint.digest:
        changed = built.fingerprint.changes_since(mark.parts)
        return _OUTDATED, f"changed: {', '.join(changed) or 'template'}"
    if _templates._force and mark.session != _templates.SESSION:
        return _OUTDATED, "--create-db"
    return _CURRENT, ""


def _test_mark(name: str, built: _templates.Template, *, complete: bool) -> Mark:
    return Mark(
        name=name,
        kind=TEST,
        template=built.spec.name,
        fingerprint=built.fingerprint.digest,
        base=built.engine.base_name,
        parts=built.fingerprint.parts,
        session=_templates.SESSION,
        complete=complete,
    )


def _fresh_clone(
    engine: Engine, name: str, built: _templates.Template, *, exists: bool
) -> None:
    if exists:
        _safety.drop(engine, name)
    # Complete only once the copy is: a clone cut short is never reused.
    engine.clone(built.name, name, _test_mark(name, built, complete=False).dumps())
    engine.write_mark(name, _test_mark(name, built, complete=True).dumps())
    with _counting:
        stats.databases_cloned += 1


def _leave_to_django(
    creation: Any,
    name: str,
    keepdb: bool,
    built: _templates.Template,
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A test database testbed did not make: Django handles it as always."""
    if keepdb:
        note(
            f"test database {name!r} was not made by testbed, so Django reuses "
            "it and migrates it as before; drop it, or run once with "
            "--create-db (pytest) or without --keepdb (manage.py test), to let "
            "testbed manage it"
        )
        return original(*args, **kwargs)
    # Django replaces it with a new, migrated database; that one testbed
    # may adopt, being as fresh as a clone of the schema.
    result = original(*args, **kwargs)
    engine = engine_for(
        _templates.base_settings(creation.connection.alias), creation.connection.alias
    )
    engine.write_mark(name, _test_mark(name, built, complete=True).dumps())
    locks = contextlib.ExitStack()
    with contextlib.suppress(TimeoutError):
        locks.enter_context(engine.lock(f"testbed-use:{name}", 0))
    _managed[name] = _Managed(name, engine, built, False, locks)
    return result


# --- installing -------------------------------------------------------------------


def install() -> None:
    """Route Django's test database creation through testbed (nestable)."""
    global _installed
    from django.db.backends.base.creation import BaseDatabaseCreation

    with _lock:
        _installed += 1
        if _installed > 1:
            return
        for method, hook in (
            ("create_test_db", _create_test_db),
            ("clone_test_db", _clone_test_db),
            ("destroy_test_db", _destroy_test_db),
        ):
            _originals[method] = getattr(BaseDatabaseCreation, method)
            setattr(BaseDatabaseCreation, method, hook)


def uninstall() -> None:
    global _installed
    from django.db.backends.base.creation import BaseDatabaseCreation

    with _lock:
        if _installed == 0:
            return
        _installed -= 1
        if _installed:
            return
        for method, original in _originals.items():
            setattr(BaseDatabaseCreation, method, original)
        _originals.clear()


def release_all() -> None:
    """At the end of the process: drop stand-ins, which are never reused,
    and let go of the names held."""
    with _lock:
        for managed in list(_managed.values()):
            try:
                if managed.stand_in and managed.engine.exists(managed.name):
                    _safety.drop(managed.engine, managed.name)
            except Exception as exc:  # at exit, report and go on
                note(f"could not drop {managed.name}: {exc}")
            finally:
                managed.locks.close()
                managed.engine.close()
        _managed.clear()


def _forget_parent() -> None:
    global _lock
    _lock = threading.RLock()
    _inherited.extend(_managed.values())
    _managed.clear()


atexit.register(release_all)
os.register_at_fork(after_in_child=_forget_parent)
