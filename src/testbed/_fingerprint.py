"""Fingerprints: a digest of everything that shapes a template's content.

A template is reused while its fingerprint is unchanged. The fingerprint is
kept in parts (one per app's migrations, one per app's models, loaders,
versions, settings) so that a rebuild can say what changed.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed._config import TemplateSpec
from testbed._engines import Engine
from testbed._loaders import resolve

# Settings keys that change what a database is or contains. PASSWORD is left
# out on purpose: it must not end up in a mark, and rotating it changes nothing.
_SETTINGS_KEYS = ("ENGINE", "HOST", "PORT", "USER", "OPTIONS", "TIME_ZONE")
_TEST_KEYS = ("CHARSET", "COLLATION", "TEMPLATE", "MIGRATE")


@dataclass(frozen=True)
class Fingerprint:
    parts: dict[str, str]

    @property
    def digest(self) -> str:
        blob = json.dumps(self.parts, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def changes_since(self, old: dict[str, str]) -> list[str]:
        """The names of the parts that differ from ``old``, readable."""
        keys = sorted(set(old) | set(self.parts))
        return [k for k in keys if old.get(k) != self.parts.get(k)]


def _digest(*chunks: bytes | str) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk.encode() if isinstance(chunk, str) else chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def migration_parts() -> dict[str, str]:
    """``migrations:<app>``: a digest of each app's migration files."""
    import importlib

    from django.apps import apps
    from django.db.migrations.loader import MigrationLoader

    parts: dict[str, str] = {}
    for config in apps.get_app_configs():
        module_name, _ = MigrationLoader.migrations_module(config.label)
        if module_name is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        paths = getattr(module, "__path__", None)
        if not paths:
            continue
        chunks: list[bytes | str] = []
        for directory in paths:
            for path in sorted(Path(directory).glob("*.py")):
                chunks += [path.name, path.read_bytes()]
        parts[f"migrations:{config.label}"] = _digest(*chunks)
    return parts


# Meta options that shape tables; ordering, verbose names and the like do not.
_SCHEMA_OPTIONS = (
    "db_table",
    "db_table_comment",
    "db_tablespace",
    "managed",
    "proxy",
    "unique_together",
    "indexes",
    "constraints",
    "required_db_features",
    "required_db_vendor",
)
_PLAIN: tuple[type, ...] = (
    bool,
    int,
    float,
    str,
    bytes,
    decimal.Decimal,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)


def _stable(value: Any) -> str:
    """Text for ``value`` that every process writes alike, cheaply.

    Deconstructed as migrations deconstruct it, but without rendering
    migration source (several times slower): a field, index or constraint
    becomes its class path and arguments.
    """
    if value is None or isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_stable(item) for item in value) + "]"
    if isinstance(value, set | frozenset):
        return "{" + ",".join(sorted(_stable(item) for item in value)) + "}"
    if isinstance(value, dict):
        items = sorted((_stable(k), _stable(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, type):
        meta = getattr(value, "_meta", None)
        label = getattr(meta, "label_lower", None)
        return str(label) if label else f"{value.__module__}.{value.__qualname__}"
    deconstruct = getattr(value, "deconstruct", None)
    if callable(deconstruct):
        try:
            parts = deconstruct()
        except Exception:  # any failure: the type is enough
            return type(value).__qualname__
        path, args, kwargs = parts[-3:]  # a field's starts with its name
        return f"{path}({_stable(args)},{_stable(kwargs)})"
    if callable(value):
        name = getattr(value, "__qualname__", type(value).__qualname__)
        return f"{getattr(value, '__module__', '')}.{name}"
    # Values without a stable text (objects with addresses in their repr)
    # change nothing in a schema; their type is enough.
    return type(value).__qualname__


def model_parts() -> dict[str, str]:
    """``models:<app>``: a digest of each app's models as migrations see them:
    fields, schema options and parents."""
    from django.apps import apps

    parts: dict[str, str] = {}
    for config in apps.get_app_configs():
        chunks: list[bytes | str] = []
        for model in sorted(config.get_models(), key=lambda m: m._meta.label):
            meta = model._meta
            chunks.append(meta.label)
            for field in [*meta.local_fields, *meta.local_many_to_many]:
                chunks += [field.name, _stable(field.deconstruct()[1:])]
            for option in _SCHEMA_OPTIONS:
                chunks += [option, _stable(getattr(meta, option, None))]
            chunks.append(_stable(list(meta.parents)))
        if chunks:
            parts[f"models:{config.label}"] = _digest(*chunks)
    return parts


def settings_part(settings: dict[str, Any]) -> str:
    test = settings.get("TEST") or {}
    relevant = {k: settings.get(k) for k in _SETTINGS_KEYS}
    relevant["TEST"] = {k: test.get(k) for k in _TEST_KEYS}
    # _stable, not str(): OPTIONS may hold callables or objects whose text
    # has a memory address, which would change the digest in every process.
    return _digest(_stable(relevant))


def schema_settings_part() -> str:
    """What else shapes a migrated schema: the routers that decide which
    models migrate where, and the database cache tables createcachetable
    makes."""
    from django.conf import settings

    routers = [
        r if isinstance(r, str) else f"{type(r).__module__}.{type(r).__qualname__}"
        for r in settings.DATABASE_ROUTERS
    ]
    caches = sorted(
        str(options.get("LOCATION"))
        for options in settings.CACHES.values()
        if str(options.get("BACKEND", "")).endswith("DatabaseCache")
    )
    return _digest(_stable({"routers": routers, "caches": caches}))


def compute(spec: TemplateSpec, engine: Engine) -> Fingerprint:
    """The fingerprint of template ``spec`` on ``engine``'s server."""
    import django

    import testbed

    parts: dict[str, str] = {
        "django": django.get_version(),
        "testbed": testbed.__version__,
        "server": engine.server_version(),
        "database": settings_part(engine.settings),
    }
    if spec.source is not None:
        parts["source"] = engine.source_state(_source_settings(spec))
    else:
        parts.update(migration_parts())
        parts.update(model_parts())
        parts["routers and caches"] = schema_settings_part()
        parts["loaders"] = _digest(
            *(
                resolve(loader, setting=spec.setting).fingerprint()
                for loader in spec.loaders
            )
        )
    return Fingerprint(parts)


def _source_settings(spec: TemplateSpec) -> dict[str, Any]:
    from testbed._config import original_databases

    assert spec.source is not None
    return dict(original_databases()[spec.source])
