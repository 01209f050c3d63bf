"""Pointing a database alias at another database, and back.

The current thread gets a new connection object for the alias, and the
settings every other thread builds its connections from are replaced too.
The previous connection object is put aside untouched, so a transaction
open on it (a TestCase's class-level atomic block) survives the detour.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper


@dataclass
class _Saved:
    alias: str
    settings: dict[str, Any]
    connection: BaseDatabaseWrapper | None


# Every point() not yet restored, oldest first.
_stack: list[_Saved] = []


def unpointed_settings() -> dict[str, dict[str, Any]]:
    """``DATABASES`` as it was before testbed pointed any alias elsewhere."""
    from django.db import connections

    result = dict(connections.settings)
    for saved in reversed(_stack):
        result[saved.alias] = saved.settings
    return result


def _current(alias: str) -> BaseDatabaseWrapper | None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.alias == alias:
            return conn
    return None


def mirrors_of(alias: str) -> list[str]:
    """Aliases configured as TEST MIRROR of ``alias``."""
    from django.db import connections

    return [
        other
        for other, entry in connections.settings.items()
        if (entry.get("TEST") or {}).get("MIRROR") == alias
    ]


def point(alias: str, settings: dict[str, Any]) -> _Saved:
    """Point ``alias`` at the database ``settings`` describe."""
    from django.db import connections

    saved = _Saved(alias, connections.settings[alias], _current(alias))
    new_settings = dict(settings)
    connections.settings[alias] = new_settings
    connections[alias] = connections.create_connection(alias)
    _stack.append(saved)
    return saved


def restore(saved: _Saved) -> None:
    """Undo one ``point``, closing the connection it made."""
    from django.db import connections

    if saved in _stack:
        _stack.remove(saved)
    current = _current(saved.alias)
    if current is not None:
        current.close()
    connections.settings[saved.alias] = saved.settings
    if saved.connection is not None:
        connections[saved.alias] = saved.connection
    else:
        try:
            del connections[saved.alias]
        except AttributeError:
            pass


def close(alias: str) -> None:
    """Close this thread's connection for ``alias``, if it has one."""
    conn = _current(alias)
    if conn is not None:
        conn.close()


@contextmanager
def pointing(alias: str, settings: dict[str, Any]) -> Iterator[None]:
    saved = point(alias, settings)
    try:
        yield
    finally:
        restore(saved)
