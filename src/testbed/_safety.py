"""Naming and safety: the one place that decides what testbed may destroy.

Every database testbed creates gets a name derived from the test database
name and a mark of ownership recorded with it (see ``Mark``). Dropping a
database, ending its sessions or restoring its tables goes through
``drop`` and ``reset`` here, which refuse unless the database carries a
mark naming it, written by testbed, and its name is none of the databases
the project configures.

The one exception is an engine undoing its own work in the same call: a
database it has just created, whose creation or marking failed, it drops
itself before raising, since nothing else could ever prove it testbed's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from testbed._engines import Engine
from testbed._errors import TestbedError

MARK_VERSION = 1
Kind = Literal["template", "clone", "test"]
TEMPLATE: Kind = "template"
CLONE: Kind = "clone"
# A test database (Django's ``test_<NAME>``, its xdist or --parallel
# variants) that testbed made as a clone of a schema template.
TEST: Kind = "test"


class UnsafeOperation(TestbedError):
    """testbed refused to touch a database it cannot prove it created."""


@dataclass(frozen=True)
class Mark:
    """The record of ownership stored with every database testbed creates."""

    name: str
    kind: Kind
    template: str
    fingerprint: str
    base: str
    complete: bool = False
    # The fingerprint's parts, so a rebuild can say what changed.
    parts: dict[str, str] = field(default_factory=dict)
    # The test session that built it: --create-db rebuilds what an earlier
    # session built, once, however many workers ask.
    session: str = ""
    # A test database made under another name because a run held its own:
    # never kept, and dropped once its process has ended.
    stand_in: bool = False
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    created: float = field(default_factory=time.time)
    testbed: int = MARK_VERSION

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | None) -> Mark | None:
        """The mark in ``raw``, or None if ``raw`` is not one of testbed's."""
        if not raw:
            return None
        try:
            data = json.loads(raw.strip())
            if not isinstance(data, dict) or data.get("testbed") != MARK_VERSION:
                return None
            return cls(**data)
        except (ValueError, TypeError):
            return None

    def completed(self) -> Mark:
        return Mark(**{**asdict(self), "complete": True})


_SAFE_CHARS = re.compile(r"[^a-z0-9_]+")


def slug(text: str, *, max_length: int = 24) -> str:
    """``text`` reduced to ``[a-z0-9_]``; a hash keeps distinct inputs distinct."""
    cleaned = _SAFE_CHARS.sub("_", text.lower()).strip("_") or "x"
    if cleaned == text and len(cleaned) <= max_length:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{cleaned[: max_length - 7]}_{digest}"


def template_suffix(template: str, fingerprint: str) -> str:
    return f"tbt_{slug(template)}_{fingerprint[:12]}"


def clone_suffix(template: str, token: str) -> str:
    return f"tbc_{slug(template)}_{token}"


def _in_memory(name: str) -> bool:
    # An in-memory SQLite database lives as long as its connections: there
    # is nothing on disk for a test run to replace.
    return name == ":memory:" or "mode=memory" in name


def _identity(entry: dict[str, Any], name: object) -> tuple[str, str] | None:
    """What names database ``name`` of ``entry``'s vendor: its vendor and,
    for SQLite, its real path. None for an in-memory database.

    Hosts are left out on purpose: "localhost", "127.0.0.1", a socket path
    or another DNS name may all be the same server, and testbed cannot
    tell; two databases of one vendor and name are taken to be one.
    """
    text = str(name)
    if not text or _in_memory(text):
        return None
    try:
        from testbed._engines import vendor_of

        vendor = vendor_of(entry)
    except Exception:  # a broken ENGINE: compare by name alone
        vendor = str(entry.get("ENGINE") or "")
    if vendor == "sqlite":
        text = os.path.realpath(text)
    return vendor, text


def real_names() -> dict[str, str]:
    """The project's own databases: each alias's ``NAME`` as configured,
    before test set-up renamed anything; name to alias."""
    from testbed._config import original_databases

    return {
        str(entry["NAME"]): alias
        for alias, entry in original_databases().items()
        if entry.get("NAME") and not _in_memory(str(entry["NAME"]))
    }


def _real_databases() -> dict[tuple[str, str], str]:
    """The identity of each alias's own database, to the alias."""
    from testbed._config import original_databases

    found: dict[tuple[str, str], str] = {}
    for alias, entry in original_databases().items():
        identity = _identity(entry, entry.get("NAME") or "")
        if identity is not None:
            found.setdefault(identity, alias)
    return found


def configured_test_names() -> set[str]:
    """``TEST['NAME']`` values the project configures."""
    from testbed._config import original_databases

    return {
        str(name)
        for entry in original_databases().values()
        if (name := (entry.get("TEST") or {}).get("NAME"))
    }


def check_test_name(alias: str, name: str | os.PathLike[str]) -> None:
    """Refuse a test database name that is one of the project's real databases.

    Django would replace such a database with an empty test database;
    testbed stops before anything is touched.
    """
    __tracebackhide__ = True
    name = str(name)
    if not name or not name.strip():
        raise UnsafeOperation(
            f"DATABASES[{alias!r}] gives an empty test database name. Set NAME "
            "(or TEST['NAME'])."
        )
    from testbed._config import original_databases

    identity = _identity(original_databases().get(alias) or {}, name)
    owner = _real_databases().get(identity) if identity else None
    if owner is not None:
        where = (
            f"DATABASES[{alias!r}]['TEST']['NAME'] equals its NAME"
            if owner == alias
            else f"The test database of DATABASES[{alias!r}] is named like the "
            f"NAME of DATABASES[{owner!r}]"
        )
        raise UnsafeOperation(
            f"{where} {name!r}: a test run would replace that database. Give "
            f"DATABASES[{alias!r}]['TEST']['NAME'] a name of its own."
        )


def check_owned(engine: Engine, name: str, *, action: str) -> Mark:
    """The mark of ``name`` if testbed may ``action`` it; else raise.

    ``action`` is a verb phrase for the message, e.g. "drop".
    """
    __tracebackhide__ = True
    if not name or not name.strip():
        raise UnsafeOperation(
            f"testbed refuses to {action} a database with an empty name. "
            "Check NAME and TEST['NAME'] in DATABASES."
        )
    configured = name in real_names()
    mark = Mark.loads(engine.read_mark(name))
    # A configured TEST['NAME'] is testbed's only if testbed made it as a
    # test database; a real NAME never is.
    if configured or (
        name in configured_test_names() and (mark is None or mark.kind != TEST)
    ):
        raise UnsafeOperation(
            f"testbed refuses to {action} database {name!r}: it is configured "
            "in DATABASES (as NAME or TEST['NAME']), and testbed only touches "
            "databases it created itself."
        )
    if mark is None:
        raise UnsafeOperation(
            f"testbed refuses to {action} database {name!r}: it carries no "
            "testbed ownership mark, so testbed did not create it. Remove it "
            "yourself if it is really disposable."
        )
    if mark.name != name:
        raise UnsafeOperation(
            f"testbed refuses to {action} database {name!r}: its ownership "
            f"mark names {mark.name!r}, so it is a copy testbed did not make. "
            "Remove it yourself if it is really disposable."
        )
    return mark


def drop(engine: Engine, name: str) -> None:
    """Drop ``name``, which must be a database testbed created."""
    check_owned(engine, name, action="drop")
    engine._drop(name)


def reset(engine: Engine, name: str, template: str) -> bool:
    """Restore the changed tables of testbed's clone ``name`` from ``template``."""
    check_owned(engine, name, action="restore tables of")
    return engine._reset_tracked(name, template)


def why_not_reset(alias: str, settings: dict[str, Any]) -> str | None:
    """Why testbed may not empty or restore the tables of the database
    ``settings`` names in place of Django's flush; None if it may.

    It may for an in-memory SQLite database, which no one else can hold,
    and for a test database testbed made (its mark says so); never for a
    database the project configures as a ``NAME``.
    """
    from testbed._config import original_databases
    from testbed._engines import engine_for

    name = str(settings.get("NAME") or "")
    identity = _identity(original_databases().get(alias) or settings, name)
    if identity is None:
        return None if name else "it has no NAME"
    if identity in _real_databases():
        return (
            "it is configured in DATABASES as a NAME, so testbed leaves it to "
            "Django's flush"
        )
    engine = engine_for(settings, alias)
    try:
        mark = Mark.loads(engine.read_mark(name))
    finally:
        engine.close()
    if mark is None or mark.name != name or mark.kind != TEST:
        return (
            "testbed did not make this test database, so its transactional "
            "tests are flushed as Django does; drop it, or run once with "
            "--create-db (pytest) or without --keepdb (manage.py test), to let "
            "testbed make it"
        )
    return None


def describe(mark: Mark | None) -> dict[str, Any]:
    return asdict(mark) if mark else {}
