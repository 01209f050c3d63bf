"""Vendor clone engines: one module per database vendor."""

from __future__ import annotations

from typing import Any

from testbed._engines._base import DatabaseInfo, Engine, EngineError
from testbed._engines._table_reset import TableReset

__all__ = [
    "DatabaseInfo",
    "Engine",
    "EngineError",
    "TableReset",
    "backend_of",
    "engine_for",
    "table_reset_for",
    "vendor_of",
]

_VENDORS = {
    "sqlite": "testbed._engines.sqlite.engine:SQLiteEngine",
    "postgresql": "testbed._engines.postgresql.engine:PostgreSQLEngine",
    "mysql": "testbed._engines.mysql.engine:MySQLEngine",
}


_TABLE_RESETS = {
    "sqlite": "testbed._engines.sqlite.table_reset:SQLiteTableReset",
    "postgresql": "testbed._engines.postgresql.table_reset:PostgreSQLTableReset",
    "mysql": "testbed._engines.mysql.table_reset:MySQLTableReset",
}


def _load(target: str) -> Any:
    import importlib

    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


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
    cls: type[Engine] = _load(target)
    return cls(settings, alias)


def table_reset_for(connection: Any) -> TableReset | None:
    """The table operations for a live Django connection; None for a
    vendor testbed has none for."""
    target = _TABLE_RESETS.get(connection.vendor)
    if target is None:
        return None
    cls: type[TableReset] = _load(target)
    return cls(connection)
