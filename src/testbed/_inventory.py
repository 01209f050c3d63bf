"""What testbed owns on each server, and which of it is stale.

Only databases carrying testbed's ownership mark are listed: templates,
test databases and working clones. Whether one is stale is judged against
the fingerprints the project's code gives now, and whether its owner is
still there.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from testbed import _safety, _templates
from testbed._config import templates as configured_templates
from testbed._engines import Engine, engine_for
from testbed._fingerprint import Fingerprint, compute
from testbed._safety import CLONE, TEMPLATE, Mark


@dataclass(frozen=True)
class Entry:
    """One database testbed owns."""

    alias: str
    vendor: str
    kind: str
    name: str
    template: str
    size_bytes: int | None
    fingerprint: str
    age_seconds: float
    in_use: bool
    stale: bool
    # Why it is stale, or what it is in use by; empty when neither.
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schema_aliases() -> list[str]:
    """Aliases with a database of their own on a server testbed supports."""
    from django.db import connections

    from testbed._engines import vendor_of

    seen: set[tuple[str, str, str]] = set()
    found = []
    for alias, entry in connections.settings.items():
        if (entry.get("TEST") or {}).get("MIRROR"):
            continue
        if vendor_of(entry) not in ("sqlite", "postgresql", "mysql"):
            continue
        settings = _templates.base_settings(alias)
        key = (str(settings.get("HOST")), str(settings.get("PORT")), settings["NAME"])
        if key not in seen:
            seen.add(key)
            found.append(alias)
    return found


@contextlib.contextmanager
def _migrations_off() -> Iterator[None]:
    """Compute as ``--nomigrations`` does: every app synced from models."""
    from django.apps import apps
    from django.conf import settings

    old = settings.MIGRATION_MODULES
    settings.MIGRATION_MODULES = {
        config.label: None for config in apps.get_app_configs()
    }
    try:
        yield
    finally:
        settings.MIGRATION_MODULES = old


class _Current:
    """The fingerprints the project's code gives now, computed on demand."""

    def __init__(self) -> None:
        self._cache: dict[str, Fingerprint | None] = {}

    def of(self, template: str, engine: Engine) -> Fingerprint | None:
        """The fingerprint template ``template`` would have; None if it is
        no longer configured."""
        if template not in self._cache:
            self._cache[template] = self._compute(template, engine)
        return self._cache[template]

    @staticmethod
    def _compute(template: str, engine: Engine) -> Fingerprint | None:
        variant, _, alias = template.partition(":")
        if alias and variant in ("migrated", "synced"):
            from django.db import connections

            if alias not in connections.settings:
                return None
            spec = _templates.schema_spec(alias)
            if variant == "synced" and not spec.name.startswith("synced:"):
                with _migrations_off():
                    return compute(_templates.schema_spec(alias), engine)
            return compute(spec, engine)
        spec_ = configured_templates().get(template)
        return None if spec_ is None else compute(spec_, engine)


def _owner_alive(mark: Mark) -> bool:
    if mark.host != socket.gethostname():
        return True  # cannot tell: assume it is
    try:
        os.kill(mark.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_held(engine: Engine, name: str) -> bool:
    try:
        with engine.lock(f"testbed-use:{name}", 0):
            return False
    except TimeoutError:
        return True


def _judge(
    engine: Engine, mark: Mark, current: _Current, in_use: bool
) -> tuple[bool, bool, str]:
    """(in_use, stale, reason) of one of testbed's databases."""
    name = mark.name
    if mark.kind == CLONE or mark.stand_in:
        alive = _owner_alive(mark)
        if in_use or alive:
            return True, False, f"process {mark.pid} on {mark.host}"
        return False, True, f"its process {mark.pid} has ended"
    if in_use or _lock_held(engine, name):
        return True, False, "a test run"
    if mark.kind == TEMPLATE and not mark.complete:
        if _lock_held(engine, f"testbed-build:{name}"):
            return True, False, "being built"
        return False, True, "an incomplete build"
    if not mark.complete:
        return False, True, "an incomplete clone"
    fingerprint = current.of(mark.template, engine)
    if fingerprint is None:
        return False, True, f"template {mark.template!r} is no longer configured"
    if fingerprint.digest != mark.fingerprint:
        changed = fingerprint.changes_since(mark.parts)
        return (
            False,
            True,
            f"out of date: {', '.join(changed) or 'its template'} changed",
        )
    return False, False, ""


def inventory(aliases: list[str] | None = None) -> list[tuple[Entry, Engine]]:
    """Every database testbed owns for ``aliases`` (default: all), with the
    engine that reaches it."""
    current = _Current()
    found: list[tuple[Entry, Engine]] = []
    now = time.time()
    for alias in aliases or schema_aliases():
        engine = engine_for(_templates.base_settings(alias), alias)
        for info in engine.list_databases(engine.base_name):
            mark = Mark.loads(info.mark)
            if mark is None or mark.name != info.name:
                continue  # not testbed's
            if mark.base != engine.base_name:
                continue  # another alias's, whose name starts like this one's
            in_use, stale, reason = _judge(engine, mark, current, info.in_use)
            entry = Entry(
                alias=alias,
                vendor=engine.vendor,
                kind=mark.kind,
                name=info.name,
                template=mark.template,
                size_bytes=info.size_bytes,
                fingerprint=mark.fingerprint[:12],
                age_seconds=max(0.0, now - mark.created),
                in_use=in_use,
                stale=stale,
                reason=reason,
            )
            found.append((entry, engine))
    return found


def drop(entry: Entry, engine: Engine) -> None:
    """Drop one listed database, through the one guard, holding its name so
    that no test run starts using it meanwhile."""
    try:
        with engine.lock(f"testbed-use:{entry.name}", 0):
            _safety.drop(engine, entry.name)
    except TimeoutError:
        raise _safety.UnsafeOperation(
            f"testbed refuses to drop database {entry.name!r}: a test run "
            "started using it. Run `testbed clean` again once it has finished."
        ) from None
