"""Template databases: each built once per fingerprint, shared by every process.

A template is built under a cross-process lock, marked complete only when
everything succeeded, then sealed. An alias's schema (migrated, or synced
from models) is a template of its own, which test databases and the
alias's other templates are cloned from. ``testbed._clones`` gives each
process its working clones of them.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from testbed import _safety, _switch
from testbed._config import (
    TemplateSpec,
    canonical_test_name,
    lock_timeout,
    original_databases,
)
from testbed._engines import Engine, EngineError, engine_for
from testbed._errors import TestbedError
from testbed._fingerprint import Fingerprint, compute
from testbed._loaders import resolve
from testbed._safety import TEMPLATE, Mark
from testbed._settings import ConfigurationError
from testbed._stats import note, stats, timed

_lock = threading.RLock()
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


_templates: dict[str, Template] = {}
_failed: dict[str, BuildError] = {}


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
    """The built template for ``spec``, building it if needed.

    A build that failed fails again at once for the rest of the process:
    every test that asks for a broken template would otherwise rebuild it.
    """
    with _lock, timed():
        found = _templates.get(spec.name)
        if found is not None:
            return found
        failed = _failed.get(spec.name)
        if failed is not None:
            raise failed
        try:
            built = _find_or_build(spec)
        except BuildError as exc:
            _failed[spec.name] = exc
            raise
        _templates[spec.name] = built
        return built


def refreshed(spec: TemplateSpec) -> Template:
    """``spec``'s template found again, for when the one this process knew
    has gone: another run's ``--create-db`` is rebuilding it (this waits for
    that build), or ``testbed clean`` dropped it (this builds it again)."""
    with _lock:
        _templates.pop(spec.name, None)
        return template(spec)


def clone(
    built: Template, target: str, mark: str, engine: Engine | None = None
) -> Template:
    """Clone ``built`` into ``target`` (with ``engine``, if given); returns
    the template it cloned, which is a new one if ``built`` was replaced."""
    engine = engine or built.engine
    try:
        engine.clone(built.name, target, mark)
        return built
    except (EngineError, OSError):
        if engine.exists(built.name):
            raise
    fresh = refreshed(built.spec)
    engine.clone(fresh.name, target, mark)
    return fresh


def rebuild_wanted(mark: Mark) -> bool:
    """Whether ``--create-db`` asks to replace what ``mark`` belongs to:
    built by an earlier session than this one."""
    return _force and mark.session != SESSION


def _find_or_build(spec: TemplateSpec) -> Template:
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
        and not rebuild_wanted(mark)
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
            clone(schema, name, mark.dumps(), engine)
            with _switch.pointing(spec.alias, engine.settings_for(name)):
                _load(spec)
        else:
            engine.create_empty(name, mark.dumps())
            with _switch.pointing(spec.alias, engine.settings_for(name)):
                _migrate(spec)
            # What serialized_rollback restores test databases to.
            engine.keep_baseline(name)
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


def close() -> None:
    """Forget the templates found, closing their engines' connections."""
    with _lock:
        for built in _templates.values():
            built.engine.close()
        _templates.clear()


def ensure_templates(names: list[str]) -> None:
    """Build (or find) the named templates now, e.g. before a run."""
    from testbed._config import template as get_spec

    for name in names:
        template(get_spec(name))


def _forget_parent() -> None:
    """In a forked child: the parent's connections are not ours."""
    global _lock
    _lock = threading.RLock()
    _inherited.extend(_templates.values())
    _templates.clear()


os.register_at_fork(after_in_child=_forget_parent)
