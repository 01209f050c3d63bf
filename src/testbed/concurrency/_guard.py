"""Which databases concurrent calls use, and whether they can see the test's data.

The calls run on other connections (other processes, or other threads), so
they see only what is committed, in a database other connections can open.
Everything here reads the calling thread's live connections, whose settings
already carry pytest-xdist's suffix, Django's ``--parallel`` clone and
testbed's template clones: no test database name is ever recomputed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from testbed.concurrency._errors import UnsharedDatabaseError

_FIX_TRANSACTION = (
    "Use TransactionTestCase, @pytest.mark.django_db(transaction=True), or a "
    "template database (TemplateDBTransactionTestCase, or "
    "use_template_database), whose clone is restored after each test."
)


@dataclass
class Databases:
    """Every alias's settings, and which aliases the calls may use."""

    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Aliases the calls may use, in the order DATABASES lists them.
    usable: list[str] = field(default_factory=list)
    # Aliases the calling test may not use, with the error to raise there.
    forbidden: dict[str, str] = field(default_factory=dict)


def databases(
    requested: Collection[str] | None, *, caller: str, threads: bool
) -> Databases:
    """The databases for a batch of calls, checked.

    ``requested`` names the aliases the calls use; by default, every alias
    the calling test may use (Django's ``databases`` of the test case, or of
    pytest-django's ``django_db`` marker). Each is connected here first,
    which also raises pytest-django's error in a test without database access.
    """
    __tracebackhide__ = True
    from django.db import connections
    from django.test.testcases import (  # type: ignore[attr-defined]
        DatabaseOperationForbidden,
    )

    aliases = list(connections)
    if requested is not None:
        requested = _validate(requested, aliases, caller=caller)
    found = Databases()
    for alias in aliases:
        conn = connections[alias]
        found.settings[alias] = dict(conn.settings_dict)
        if requested is not None and alias not in requested:
            found.forbidden[alias] = (
                f"Database {alias!r} is not in databases={sorted(requested)!r} "
                f"of {caller}; add it there to use it in the calls."
            )
            continue
        if conn.settings_dict.get("ENGINE") == "django.db.backends.dummy":
            continue  # DATABASES leaves it unconfigured
        try:
            conn.ensure_connection()
        except DatabaseOperationForbidden as exc:
            if requested is not None:
                raise
            found.forbidden[alias] = str(exc)
            continue
        except Exception as exc:
            exc.add_note(
                f"{caller} connects to each database the calls may use "
                f"(here {alias!r}) before it starts them; pass databases=[...] "
                "to name only the ones they use."
            )
            raise
        _check_memory(conn, caller=caller, threads=threads)
        _check_committed(conn, caller=caller, threads=threads)
        found.usable.append(alias)
    return found


def _validate(
    requested: Collection[str], aliases: list[str], *, caller: str
) -> set[str]:
    __tracebackhide__ = True
    if isinstance(requested, str) or not all(isinstance(a, str) for a in requested):
        raise TypeError(
            f"databases= of {caller} must be a collection of DATABASES aliases, "
            f"such as ['default'], not {requested!r}."
        )
    unknown = [a for a in requested if a not in aliases]
    if unknown:
        raise ValueError(
            f"databases= of {caller} names {', '.join(map(repr, unknown))}, "
            f"not in DATABASES (aliases: {', '.join(map(repr, aliases))})."
        )
    return set(requested)


def _others(threads: bool) -> str:
    return "other threads" if threads else "other processes"


def _check_memory(conn: Any, *, caller: str, threads: bool) -> None:
    __tracebackhide__ = True
    if conn.vendor != "sqlite":
        return
    name = str(conn.settings_dict.get("NAME") or "")
    if not conn.is_in_memory_db():
        return
    # Threads share a named shared-cache memory database (Django's test
    # databases are such), but never a private one.
    if threads and "mode=memory" in name and "cache=shared" in name:
        return
    where = f"DATABASES[{conn.alias!r}]"
    if threads:
        fix = (
            f"Give it a file, e.g. {where}['TEST']['NAME'] = 'test_db.sqlite3' "
            f"(or a NAME of the form 'file:name?mode=memory&cache=shared')."
        )
    else:
        fix = (
            f"Give it a file, e.g. {where}['TEST']['NAME'] = 'test_db.sqlite3', "
            "or pass threads=True to race threads of this process instead."
        )
    raise UnsharedDatabaseError(
        f"{caller} cannot run calls on database {conn.alias!r}: it is an "
        f"in-memory SQLite database ({name!r}), which {_others(threads)} "
        f"cannot open. {fix}"
    )


def _check_committed(conn: Any, *, caller: str, threads: bool) -> None:
    __tracebackhide__ = True
    if not conn.in_atomic_block:
        return
    # Only the test framework's own transaction is refused: inside an
    # atomic block of its own, a test may race the calls against a lock it
    # holds, knowing they cannot see what it has not committed.
    blocks = getattr(conn, "atomic_blocks", [])
    if not any(getattr(block, "_from_testcase", False) for block in blocks):
        return
    raise UnsharedDatabaseError(
        f"{caller} cannot run calls on database {conn.alias!r}: this test "
        "runs inside a transaction (Django's TestCase, or a pytest django_db "
        "test without transaction=True), so its data is not committed and "
        f"{_others(threads)} cannot see it. {_FIX_TRANSACTION}"
    )
