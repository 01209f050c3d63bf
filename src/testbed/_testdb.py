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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from testbed import _clones, _reset, _safety, _templates
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
    # Someone else's test database, which Django handles as it always has;
    # testbed only holds its name for the run.
    foreign: bool = False
    # Cloned in this run, so that it holds the schema template's state.
    fresh: bool = False


# By (alias, name): two aliases on two servers may share a test name.
_managed: dict[tuple[str, str], _Managed] = {}
# --parallel clones made (or found current) ahead of Django's one-by-one
# calls: (alias, name) to what happened, and the names they hold.
_prepared: dict[tuple[str, str], tuple[str, contextlib.ExitStack]] = {}
_expected_clones = 0
_originals: dict[str, Callable[..., Any]] = {}
_installed = 0
# Inside the test runner's set-up (``creating()``): only then are Django's
# creation calls testbed's. A test that calls create_test_db() itself (as
# Django's own suite does, with migrate mocked) gets Django's.
_creating = 0
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


@contextlib.contextmanager
def creating() -> Iterator[None]:
    """The test runner's set-up of test databases (``setup_databases``):
    while inside, Django's creation and cloning come to testbed."""
    global _creating
    with _lock:
        _creating += 1
    try:
        yield
    finally:
        with _lock:
            _creating -= 1


def _create_test_db(*args: Any, **kwargs: Any) -> Any:
    original = _originals["create_test_db"]
    call = _bind("create_test_db", args, kwargs)
    creation = call["self"]
    connection = creation.connection
    if not _creating or not _handles(connection):
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
    # A Path in TEST['NAME'] (as startproject writes paths) comes back as one.
    name = str(creation._get_test_db_name())
    _safety.check_test_name(alias, name)
    # As Django's create_test_db reports migrate: one level lower.
    _templates.migrate_verbosity = max(verbosity - 1, 0)
    built = _templates.template(_templates.schema_spec(alias))
    engine = built.engine
    locks = contextlib.ExitStack()
    name, stand_in = _claim(engine, name, locks)
    state, why = _state(engine, name, built)
    if state == _FOREIGN:
        return str(
            _leave_to_django(
                creation, name, keepdb, built, locks, original, args, kwargs
            )
        )
    reuse = state == _CURRENT and keepdb
    if reuse:
        stats.databases_reused += 1
        _clones.skip_disk_waits(engine, name)
    elif state == _OUTDATED and keepdb:
        note(f"recreating test database {name!r} ({why})")
    if verbosity >= 1:
        # Django's own words: logs and scripts look for them.
        action = "Using existing" if reuse else "Creating"
        display = creation._get_database_display_str(verbosity, name)
        creation.log(f"{action} test database for alias {display}...")
    if not reuse:
        built = _fresh_clone(
            engine, name, built, exists=state != _ABSENT, stand_in=stand_in
        )
    _managed[alias, name] = _Managed(
        name, engine, built, stand_in, locks, fresh=not reuse
    )
    connection.close()
    _rename(connection, name)
    if call.get("serialize") is True:
        connection._test_serialized_contents = creation.serialize_db_to_string()
    connection.ensure_connection()
    if os.environ.get("RUNNING_DJANGOS_TEST_SUITE") == "true":
        # As Django's create_test_db: its own suite's per-backend skips and
        # expected failures (without them, a test meant for other backends
        # runs, and leaves an index behind for the one meant for this one).
        creation.mark_expected_failures_and_skips()
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
    alias = creation.connection.alias
    source = _managed.get((alias, creation.connection.settings_dict["NAME"]))
    if not _creating or source is None or source.foreign or _is_memory(source.name):
        # Not testbed's, or in memory: Django's own copy is exact.
        return original(*args, **kwargs)
    with _lock, timed():
        verbosity, keepdb = call.get("verbosity", 1), bool(call.get("keepdb"))
        target = creation.get_test_db_clone_settings(call["suffix"])["NAME"]
        if (
            (alias, target) not in _prepared
            and _expected_clones > 1
            and source.engine.parallel_clones
        ):
            _prepare_clones(creation, source, keepdb)
        prepared = _prepared.pop((alias, target), None)
        if prepared is None:
            locks = contextlib.ExitStack()
            outcome = _clone_one(source, target, keepdb, locks)
        else:
            outcome, locks = prepared
        if outcome == _FOREIGN:
            locks.close()
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
        _managed[alias, target] = _Managed(
            target,
            source.engine,
            source.template,
            source.stand_in,
            locks,
            fresh=outcome == _ABSENT,
        )
        return None


def _clone_one(
    source: _Managed,
    target: str,
    keepdb: bool,
    locks: contextlib.ExitStack,
    engine: Engine | None = None,
) -> str:
    """Make ``target`` a current clone of ``source``'s template, reusing it
    if ``keepdb`` allows, its name held in ``locks``; returns what it found
    (current, or foreign)."""
    engine = engine or source.engine
    # Held while testbed works on it, so `testbed clean` leaves it alone.
    with contextlib.suppress(TimeoutError):
        locks.enter_context(engine.lock(f"testbed-use:{target}", 0))
    state, why = _state(engine, target, source.template)
    if state == _FOREIGN:
        return _FOREIGN
    if state == _CURRENT and keepdb:
        with _counting:
            stats.databases_reused += 1
        _clones.skip_disk_waits(engine, target)
        return _CURRENT
    if state == _OUTDATED and keepdb:
        note(f"recreating test database {target!r} ({why})")
    _fresh_clone(
        engine,
        target,
        source.template,
        exists=state != _ABSENT,
        stand_in=source.stand_in,
    )
    return _ABSENT


def _prepare_clones(creation: Any, source: _Managed, keepdb: bool) -> None:
    """Every clone Django will ask for, made at once, each over its own
    connections."""
    from concurrent.futures import ThreadPoolExecutor

    alias = creation.connection.alias
    targets = [
        creation.get_test_db_clone_settings(str(index))["NAME"]
        for index in range(1, _expected_clones + 1)
    ]
    engines = [engine_for(source.engine.settings, source.engine.alias) for _ in targets]
    stacks = [contextlib.ExitStack() for _ in targets]
    try:
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            futures = [
                pool.submit(_clone_one, source, target, keepdb, locks, engine)
                for target, locks, engine in zip(targets, stacks, engines, strict=True)
            ]
        # Those made are recorded even if another failed: Django asks for
        # each, and the failed one is tried again then, alone.
        for target, locks, future in zip(targets, stacks, futures, strict=True):
            if future.exception() is None:
                _prepared[alias, target] = (future.result(), locks)
            else:
                locks.close()
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
        managed = _managed.pop((connection.alias, name), None)
    if managed is None:
        return original(*args, **kwargs)
    if managed.foreign:
        try:
            return original(*args, **kwargs)
        finally:
            managed.locks.close()
    with timed():
        connection.close()
        _reset.release(connection.alias, name)
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


def serialized_baseline(connection: Any) -> Any:
    """What stands in for ``serialize_db_to_string()`` during set-up, for a
    test database testbed cloned: see ``testbed._reset``. None for Django's
    own serialization."""
    if not _creating:
        return None
    with _lock:
        managed = _managed.get((connection.alias, connection.settings_dict["NAME"]))
    if managed is None or managed.foreign:
        return None
    return _reset.baseline_for(
        connection, template=managed.template, fresh=managed.fresh
    )


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
    if _templates.rebuild_wanted(mark):
        return _OUTDATED, "--create-db"
    return _CURRENT, ""


def _test_mark(
    name: str, built: _templates.Template, *, complete: bool, stand_in: bool = False
) -> Mark:
    return Mark(
        name=name,
        kind=TEST,
        template=built.spec.name,
        fingerprint=built.fingerprint.digest,
        base=built.engine.base_name,
        parts=built.fingerprint.parts,
        session=_templates.SESSION,
        complete=complete,
        stand_in=stand_in,
    )


def _fresh_clone(
    engine: Engine,
    name: str,
    built: _templates.Template,
    *,
    exists: bool,
    stand_in: bool = False,
) -> _templates.Template:
    """Make ``name`` a new clone of ``built``; returns the template cloned
    (a new one, if another run replaced ``built`` meanwhile)."""
    if exists:
        _safety.drop(engine, name)
    # Complete only once the copy is: a clone cut short is never reused.
    incomplete = _test_mark(name, built, complete=False, stand_in=stand_in)
    built = _templates.clone(built, name, incomplete.dumps(), engine)
    complete = _test_mark(name, built, complete=True, stand_in=stand_in)
    engine.write_mark(name, complete.dumps())
    _clones.skip_disk_waits(engine, name)
    with _counting:
        stats.databases_cloned += 1
    return built


def _leave_to_django(
    creation: Any,
    name: str,
    keepdb: bool,
    built: _templates.Template,
    locks: contextlib.ExitStack,
    original: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """A test database testbed did not make: Django handles it as always,
    while testbed holds its name for the run."""
    if keepdb:
        note(
            f"test database {name!r} was not made by testbed, so Django reuses "
            "it and migrates it as before; drop it, or run once with "
            "--create-db (pytest) or without --keepdb (manage.py test), to let "
            "testbed manage it"
        )
    try:
        result = original(*args, **kwargs)
    except BaseException:
        locks.close()
        raise
    if not keepdb:
        # Django replaced it with a new, migrated database, which testbed
        # adopts: it is as fresh as a clone of the schema.
        built.engine.write_mark(name, _test_mark(name, built, complete=True).dumps())
    _managed[creation.connection.alias, name] = _Managed(
        name, built.engine, built, locks=locks, foreign=keepdb
    )
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
        _clones.listen()
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
