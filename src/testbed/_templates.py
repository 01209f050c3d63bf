"""Template databases: build once per fingerprint, clone per process, restore.

A template is built under a cross-process lock, marked complete only when
everything succeeded, then sealed. Each process gets its own working clone
of a template and brings it back to the template's state when a test asks
for that, by restoring the tables that changed where the engine can, or by
a fresh clone.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from testbed import _safety, _switch
from testbed._config import (
    ConfigurationError,
    TemplateSpec,
    canonical_test_name,
    lock_timeout,
    original_databases,
)
from testbed._engines import Engine, engine_for
from testbed._fingerprint import Fingerprint, compute
from testbed._loaders import resolve
from testbed._safety import CLONE, TEMPLATE, Mark, TestbedError
from testbed._stats import note, stats, timed

# Distinguishes this process's clones from those of concurrent test runs
# and of its own forked workers.
TOKEN = secrets.token_hex(3)
_lock = threading.RLock()
_finalizer_registered = False
# The test session (shared by its xdist workers) and whether it rebuilds
# what earlier sessions built (pytest's --create-db).
SESSION = secrets.token_hex(8)
_force = False
# migrate's verbosity when a build runs it: Django's, one below the test
# run's (set by whoever asks for a test database).
migrate_verbosity = 0
# What forked children inherited: kept referenced, never closed, since
# closing a connection in a child would end the parent's session.
_inherited: list[Any] = []


def start_session(*, session: str | None = None, force: bool = False) -> None:
    """Begin a test session: ``force`` rebuilds every template (once per
    ``session``, however many processes share it)."""
    global SESSION, _force
    if session:
        SESSION = session
    _force = force


class BuildError(TestbedError):
    """Building a template failed; nothing half-built is left for reuse."""


@dataclass
class Template:
    spec: TemplateSpec
    engine: Engine
    name: str
    fingerprint: Fingerprint


@dataclass
class WorkingClone:
    template: Template
    name: str
    # None until a test first needs restores; then whether the engine tracks changes.
    tracking: bool | None = None
    users: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


_templates: dict[str, Template] = {}
_clones: dict[str, WorkingClone] = {}


def base_settings(alias: str) -> dict[str, Any]:
    """The alias's settings, with NAME its canonical test database name."""
    from django.db import connections

    settings = dict(connections.settings[alias])
    settings["NAME"] = canonical_test_name(alias)
    return settings


def _source_settings(spec: TemplateSpec) -> dict[str, Any]:
    assert spec.source is not None
    source = dict(original_databases()[spec.source])
    name = source.get("NAME")
    test_name = (source.get("TEST") or {}).get("NAME")
    where = f"DATABASES[{spec.source!r}]"
    if not name:
        raise ConfigurationError(
            f"{where} has an empty NAME, but {spec.setting} reads it as the "
            f"source of template {spec.name!r}. Set NAME to the database to copy."
        )
    if test_name and test_name == name:
        raise ConfigurationError(
            f"{where}['TEST']['NAME'] equals its NAME {name!r}: a test run "
            f"would replace the database that template {spec.name!r} copies "
            f"from ({spec.setting}). Give TEST['NAME'] a different name."
        )
    return source


def template(spec: TemplateSpec) -> Template:
    """The built template for ``spec``, building it if needed."""
    with _lock, timed():
        found = _templates.get(spec.name)
        if found is not None:
            return found
        engine = engine_for(base_settings(spec.alias), spec.alias)
        if spec.source is not None:
            source = _source_settings(spec)
            from testbed._engines import vendor_of

            if vendor_of(source) != engine.vendor:
                raise ConfigurationError(
                    f"Template {spec.name!r} copies DATABASES[{spec.source!r}] "
                    f"({vendor_of(source)}) into DATABASES[{spec.alias!r}] "
                    f"({engine.vendor}); {spec.setting} needs both on one vendor."
                )
        fingerprint = compute(spec, engine)
        name = engine.derive_name(
            _safety.template_suffix(spec.name, fingerprint.digest), persistent=True
        )
        built = Template(spec, engine, name, fingerprint)
        if _is_complete(built):
            _count(spec, built=False)
        else:
            try:
                with engine.lock(f"testbed-build:{name}", lock_timeout()):
                    # Another process may have finished while we waited.
                    if _is_complete(built):
                        _count(spec, built=False)
                    else:
                        _build(built)
            except TimeoutError:
                raise BuildError(
                    f"Timed out after {lock_timeout():.0f}s waiting for another "
                    f"process to build template {spec.name!r} ({name}). If no "
                    "other test run is active, run again; raise "
                    "TESTBED['LOCK_TIMEOUT'] for very large templates."
                ) from None
        _templates[spec.name] = built
        return built


def _count(spec: TemplateSpec, *, built: bool) -> None:
    if spec.schema:
        (stats.schemas_built if built else stats.schemas_reused).append(spec.alias)
    else:
        (stats.built if built else stats.reused).append(spec.name)


def _is_complete(built: Template) -> bool:
    mark = Mark.loads(built.engine.read_mark(built.name))
    return bool(
        mark
        and mark.complete
        and mark.kind == TEMPLATE
        and mark.fingerprint == built.fingerprint.digest
        and (not _force or mark.session == SESSION)
    )


def _why(built: Template) -> str:
    """Why ``built`` must be built: what changed since the newest earlier build."""
    engine = built.engine
    if engine.exists(built.name):
        same = Mark.loads(engine.read_mark(built.name))
        if same is not None and same.complete:
            return "--create-db"
        return "an earlier build of it was cut short"
    earlier: list[Mark] = []
    for info in engine.list_databases(engine.base_name):
        mark = Mark.loads(info.mark)
        if (
            mark
            and mark.kind == TEMPLATE
            and mark.template == built.spec.name
            and mark.base == engine.base_name
            and mark.complete
        ):
            earlier.append(mark)
    if not earlier:
        return "no earlier build"
    newest = max(earlier, key=lambda m: m.created)
    changed = built.fingerprint.changes_since(newest.parts)
    return f"changed: {', '.join(changed)}" if changed else "no earlier build"


def _build(built: Template) -> None:
    spec, engine, name = built.spec, built.engine, built.name
    # Other templates of the alias start from its schema: one migrate per
    # fingerprint, however many templates there are.
    schema = None
    if spec.source is None and not spec.schema:
        schema = template(schema_spec(spec.alias))
    why = _why(built)
    if engine.exists(name):
        # A build that died before completing (its mark says incomplete), or
        # a complete one that --create-db replaces.
        _safety.drop(engine, name)
    note(f"building {spec.label} into {name} ({why})")
    mark = Mark(
        name=name,
        kind=TEMPLATE,
        template=spec.name,
        fingerprint=built.fingerprint.digest,
        base=engine.base_name,
        parts=built.fingerprint.parts,
        session=SESSION,
    )
    try:
        if spec.source is not None:
            engine.copy_from(_source_settings(spec), name, mark.dumps())
        elif schema is not None:
            engine.clone(schema.name, name, mark.dumps())
            with _switch.pointing(spec.alias, engine.settings_for(name)):
                _load(spec)
        else:
            engine.create_empty(name, mark.dumps())
            with _switch.pointing(spec.alias, engine.settings_for(name)):
                _migrate(spec)
        engine.seal(name, mark.completed().dumps())
    except Exception as exc:
        try:
            if engine.exists(name):
                _safety.drop(engine, name)
        except Exception:
            pass  # the incomplete mark keeps it from being used anyway
        if isinstance(exc, TestbedError):
            raise
        raise BuildError(
            f"Building {spec.label} ({spec.setting}) failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _count(spec, built=True)


def migrations_disabled(alias: str) -> bool:
    """Whether the alias's schema comes from models rather than migrations:
    ``TEST['MIGRATE'] = False``, or pytest-django's ``--nomigrations``."""
    from django.apps import apps
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    if connections[alias].settings_dict["TEST"].get("MIGRATE") is False:
        return True
    labels = [config.label for config in apps.get_app_configs()]
    return bool(labels) and all(
        MigrationLoader.migrations_module(label)[0] is None for label in labels
    )


def schema_spec(alias: str) -> TemplateSpec:
    """The template of ``alias``'s schema: migrated, or synced from models."""
    variant = "synced" if migrations_disabled(alias) else "migrated"
    return TemplateSpec(
        name=f"{variant}:{alias}",
        alias=alias,
        aliases=(alias,),
        setting=f"DATABASES[{alias!r}]",
        schema=True,
    )


def _migrate(spec: TemplateSpec) -> None:
    """Migrate the alias's (re-pointed) database, as Django's create_test_db does."""
    from django.apps import apps
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    alias = spec.alias
    # TEST MIGRATE False syncs from models.
    old_modules = settings.MIGRATION_MODULES
    if connections[alias].settings_dict["TEST"].get("MIGRATE") is False:
        settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    try:
        call_command(
            "migrate",
            verbosity=migrate_verbosity,
            interactive=False,
            database=alias,
            run_syncdb=True,
        )
    finally:
        settings.MIGRATION_MODULES = old_modules
    call_command("createcachetable", database=alias, verbosity=0)
    connections[alias].close()


def _load(spec: TemplateSpec) -> None:
    """Run the loaders into the alias's (re-pointed) clone of its schema."""
    from django.db import connections

    loaders = [resolve(loader, setting=spec.setting) for loader in spec.loaders]
    for loader in loaders:
        loader.run(using=spec.alias)
    connections[spec.alias].close()


def working_clone(spec: TemplateSpec) -> WorkingClone:
    """This process's clone of ``spec``'s template, made on first use."""
    with _lock, timed():
        clone = _clones.get(spec.name)
        if clone is not None:
            return clone
        built = template(spec)
        engine = built.engine
        name = engine.derive_name(
            _safety.clone_suffix(spec.name, TOKEN), persistent=False
        )
        clone = WorkingClone(built, name, settings=engine.settings_for(name))
        _at_exit_of_this_process()
        _clone_into(clone)
        _clones[spec.name] = clone
        return clone


def _clone_into(clone: WorkingClone) -> None:
    built = clone.template
    mark = Mark(
        name=clone.name,
        kind=CLONE,
        template=built.spec.name,
        fingerprint=built.fingerprint.digest,
        base=built.engine.base_name,
        complete=True,
    )
    built.engine.clone(built.name, clone.name, mark.dumps())
    stats.clones += 1


def prepare_restores(clone: WorkingClone) -> None:
    """Get ``clone`` ready to be restored after tests change it."""
    if clone.tracking is None:
        with timed():
            built = clone.template
            clone.tracking = built.engine.prepare_tracking(clone.name, built.name)


def restore(clone: WorkingClone) -> None:
    """Bring ``clone`` back to its template's state.

    The caller has closed its connections to the clone.
    """
    built = clone.template
    engine = built.engine
    with timed():
        if clone.tracking and _safety.reset(engine, clone.name, built.name):
            stats.restores_tracked += 1
            return
        _safety.drop(engine, clone.name)
        _clone_into(clone)
        stats.clones -= 1  # counted as a restore, not a new clone
        stats.restores_fresh += 1
        if clone.tracking:
            clone.tracking = engine.prepare_tracking(clone.name, built.name)


def drop_working_clones() -> None:
    """Drop every working clone this process made."""
    with _lock:
        for clone in list(_clones.values()):
            try:
                _safety.drop(clone.template.engine, clone.name)
            except Exception as exc:  # at exit, report and go on
                note(f"could not drop {clone.name}: {exc}")
            finally:
                clone.template.engine.close()
        _clones.clear()
        for built in _templates.values():
            built.engine.close()
        _templates.clear()


def ensure_templates(names: list[str]) -> None:
    """Build (or find) the named templates now, e.g. before a run."""
    from testbed._config import template as get_spec

    for name in names:
        template(get_spec(name))


def _forget_parent() -> None:
    """In a forked child: the parent's clones and connections are not ours."""
    global TOKEN, _lock, _finalizer_registered
    TOKEN = secrets.token_hex(3)
    _lock = threading.RLock()
    _finalizer_registered = False
    _inherited.extend([*_clones.values(), *_templates.values()])
    _clones.clear()
    _templates.clear()


def _at_exit_of_this_process() -> None:
    # multiprocessing workers (Django's --parallel) leave through os._exit,
    # which skips atexit; their finalizers still run.
    global _finalizer_registered
    if not _finalizer_registered:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, drop_working_clones, exitpriority=100)
        _finalizer_registered = True


atexit.register(drop_working_clones)
os.register_at_fork(after_in_child=_forget_parent)
