"""Reading testbed's settings: ``TESTBED`` and django-ttdb's ``TTDB``."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from testbed._settings import ConfigurationError, check_keys
from testbed._settings import testbed_settings as _testbed_settings

DEFAULT_LOCK_TIMEOUT = 600.0
_KNOWN_TEMPLATE_KEYS = {"DATABASE", "LOADERS", "SOURCE"}

Loader = str | Callable[..., Any]


@dataclass(frozen=True)
class TemplateSpec:
    """One template database, as configured."""

    name: str
    # The alias whose server holds the template, and which tests see the clone as.
    alias: str
    loaders: tuple[Loader, ...] = ()
    # An alias whose (real, not test) database is copied instead of migrating.
    source: str | None = None
    # Every alias a test using this template sees the clone under.
    aliases: tuple[str, ...] = ()
    setting: str = "TESTBED['TEMPLATES']"
    # The alias's migrated schema alone: the template test databases and
    # the other templates of the alias are cloned from.
    schema: bool = False

    @property
    def label(self) -> str:
        """How messages name it."""
        if self.schema:
            return f"schema of {self.alias!r}"
        return f"template {self.name!r}"


_original: dict[str, dict[str, Any]] | None = None


def original_databases() -> dict[str, dict[str, Any]]:
    """``DATABASES`` as the project configured it, before test set-up renamed
    anything; snapshotted on first call (testbed calls it at import)."""
    global _original
    if _original is None:
        from django.conf import settings

        databases = cast(dict[str, dict[str, Any]], copy.deepcopy(settings.DATABASES))
        _original = databases
    return _original


def adopt_original_databases(databases: dict[str, dict[str, Any]]) -> None:
    """Take ``databases`` as the project's, from a parent process that saw
    them before test set-up renamed anything."""
    global _original
    _original = copy.deepcopy(databases)


def snapshot_databases() -> None:
    """Record ``original_databases`` now, if settings are ready."""
    from django.conf import settings

    if settings.configured:
        original_databases()


def canonical_test_name(alias: str) -> str:
    """The test database name of ``alias`` as Django derives it from the
    project's settings, before xdist, tox or ``--parallel`` suffixes.

    Templates are named from it, so every worker of a run, and every run,
    finds the same ones.
    """
    from django.db import connections

    entry = original_databases().get(alias) or connections.settings[alias]
    test_name = (entry.get("TEST") or {}).get("NAME")
    vendor = connections[alias].vendor
    if vendor == "sqlite":
        name = str(test_name or ":memory:")
        if name == ":memory:" or "mode=memory" in name:
            return f"file:memorydb_{alias}?mode=memory&cache=shared"
        return name
    if test_name:
        return str(test_name)
    if not entry.get("NAME"):
        raise ConfigurationError(
            f"DATABASES[{alias!r}] has an empty NAME, so testbed cannot derive "
            "its test database name. Set NAME (or TEST['NAME'])."
        )
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX

    return f"{TEST_DATABASE_PREFIX}{entry['NAME']}"


def lock_timeout() -> float:
    value = _testbed_settings().get("LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT)
    if not isinstance(value, int | float) or value <= 0:
        raise ConfigurationError(
            f"TESTBED['LOCK_TIMEOUT'] must be a positive number of seconds, not {value!r}."
        )
    return float(value)


def _check_alias(alias: object, setting: str) -> str:
    from django.conf import settings

    if not isinstance(alias, str) or alias not in settings.DATABASES:
        known = ", ".join(repr(a) for a in settings.DATABASES)
        raise ConfigurationError(
            f"{setting} names database alias {alias!r}, which is not in "
            f"DATABASES (aliases: {known})."
        )
    return alias


def templates() -> dict[str, TemplateSpec]:
    """Every configured template, by name."""
    from django.conf import settings

    specs: dict[str, TemplateSpec] = {}
    raw = _testbed_settings().get("TEMPLATES", {})
    if not isinstance(raw, dict):
        raise ConfigurationError(
            "TESTBED['TEMPLATES'] must be a dict of template name to options."
        )
    for name, options in raw.items():
        where = f"TESTBED['TEMPLATES'][{name!r}]"
        if not isinstance(options, dict):
            raise ConfigurationError(
                f"{where} must be a dict with DATABASE, LOADERS and/or SOURCE."
            )
        check_keys(options, _KNOWN_TEMPLATE_KEYS, where)
        alias = _check_alias(options.get("DATABASE", "default"), f"{where}['DATABASE']")
        loaders = options.get("LOADERS", ())
        if isinstance(loaders, str) or not isinstance(loaders, list | tuple):
            raise ConfigurationError(
                f"{where}['LOADERS'] must be a list of SQL files, fixtures and "
                f"dotted paths to callables, not {loaders!r}."
            )
        source = options.get("SOURCE")
        if source is not None:
            source = _check_alias(source, f"{where}['SOURCE']")
        specs[name] = TemplateSpec(
            name=name,
            alias=alias,
            loaders=tuple(loaders),
            source=source,
            aliases=(alias,),
            setting=where,
        )

    ttdb = getattr(settings, "TTDB", ())
    if isinstance(ttdb, str) or not isinstance(ttdb, list | tuple):
        raise ConfigurationError(
            f"settings.TTDB must be a list or tuple of DATABASES aliases, not {ttdb!r}."
        )
    for alias in ttdb:
        _check_alias(alias, "settings.TTDB")
        if alias in specs:
            raise ConfigurationError(
                f"{alias!r} is both in settings.TTDB and in TESTBED['TEMPLATES']; "
                "keep one of them."
            )
        # django-ttdb's model: the alias's real database is the template's
        # content, and tests see the copy as their default database.
        specs[alias] = TemplateSpec(
            name=alias,
            alias=alias,
            source=alias,
            aliases=tuple(dict.fromkeys(["default", alias])),
            setting="settings.TTDB",
        )
    return specs


def template(name: str) -> TemplateSpec:
    """The template called ``name``; the error lists the ones there are."""
    __tracebackhide__ = True
    specs = templates()
    try:
        return specs[name]
    except KeyError:
        known = ", ".join(repr(n) for n in specs) or "none are configured"
        raise ConfigurationError(
            f"Unknown template database {name!r} ({known}). Define it in "
            f"settings.TESTBED = {{'TEMPLATES': {{{name!r}: {{'DATABASE': "
            "'default', 'LOADERS': [...]}}}, or list an alias in settings.TTDB."
        ) from None
