"""Vendor clone engines: one module per database vendor."""

from __future__ import annotations

from typing import Any

from testbed._engines._base import DatabaseInfo, Engine, EngineError

__all__ = [
    "DatabaseInfo",
    "Engine",
    "EngineError",
    "backend_of",
    "engine_for",
    "vendor_of",
]

_VENDORS = {
    "sqlite": "testbed._engines.sqlite:SQLiteEngine",
    "postgresql": "testbed._engines.postgresql.engine:PostgreSQLEngine",
    "mysql": "testbed._engines.mysql.engine:MySQLEngine",
}


def backend_of(settings: dict[str, Any]) -> Any:
    """The Django backend module of a ``DATABASES`` entry; for a wrapping
    engine (``testbed.backends.shared``), the ``INNER_ENGINE`` it wraps."""
    from django.db.utils import load_backend

    return load_backend(settings.get("INNER_ENGINE") or settings["ENGINE"])


def vendor_of(settings: dict[str, Any]) -> str:
    """The vendor of a ``DATABASES`` entry, from its backend's ``vendor``."""
    return str(backend_of(settings).DatabaseWrapper.vendor)


def engine_for(settings: dict[str, Any], alias: str) -> Engine:
    """The clone engine for a ``DATABASES`` entry.

    Raises ``EngineError`` naming the ENGINE setting if its vendor has none.
    """
    import importlib

    vendor = vendor_of(settings)
    try:
        target = _VENDORS[vendor]
    except KeyError:
        raise EngineError(
            f"DATABASES[{alias!r}] uses ENGINE {settings['ENGINE']!r} "
            f"(vendor {vendor!r}); testbed supports template databases on "
            f"{', '.join(sorted(_VENDORS))}. Bind the template to an alias "
            f"on one of those in TESTBED['TEMPLATES']."
        ) from None
    module_name, _, class_name = target.partition(":")
    cls: type[Engine] = getattr(importlib.import_module(module_name), class_name)
    return cls(settings, alias)
