"""``testbed.backends.shared``: django-shareddb's wrapping engine.

``"ENGINE": "testbed.backends.shared"`` with ``"INNER_ENGINE": "<a Django
backend>"`` behaves exactly as the inner engine, except while a ``TestCase``
transaction is open on it: then every thread (live-server requests,
threads the test starts) uses the test thread's connection, sees the test's
data, and whatever it writes is rolled back with the test.

``patch_databases(DATABASES)`` rewrites a ``DATABASES`` setting to use it.
Django itself only imports this package's ``base`` module; creation,
features, operations and the rest are the inner engine's own.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from typing import Any

__all__ = ["SHARED_ENGINE", "patch_databases"]

# The ENGINE setting that selects this backend.
SHARED_ENGINE = __name__


def _aliases(value: Collection[str], name: str, databases: dict[str, Any]) -> set[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(
            f"patch_databases({name}=...) takes a collection of DATABASES "
            f"aliases, such as ('default',), not {value!r}."
        )
    unknown = sorted(set(value) - set(databases))
    if unknown:
        raise ValueError(
            f"patch_databases({name}=...) names {', '.join(map(repr, unknown))}, "
            f"not in DATABASES (aliases: {', '.join(map(repr, databases))})."
        )
    return set(value)


def patch_databases(
    databases: dict[str, dict[str, Any]],
    *,
    whitelist: Collection[str] = (),
    blacklist: Collection[str] = (),
) -> dict[str, dict[str, Any]]:
    """A copy of ``databases`` (a ``DATABASES`` setting) whose aliases use the
    shared engine, each wrapping its own ENGINE as ``INNER_ENGINE``.

    ``whitelist``: only these aliases (all, if empty); ``blacklist``: never
    these. The argument itself is left untouched::

        DATABASES = testbed.patch_databases(DATABASES)
    """
    allowed = _aliases(whitelist, "whitelist", databases)
    denied = _aliases(blacklist, "blacklist", databases)
    patched = copy.deepcopy(databases)
    for alias, entry in patched.items():
        if alias in denied or (allowed and alias not in allowed):
            continue
        if entry.get("ENGINE") == SHARED_ENGINE:
            continue  # already wrapped
        if not entry.get("ENGINE"):
            raise ValueError(
                f"patch_databases() cannot wrap DATABASES[{alias!r}]: it has no "
                "ENGINE. Set ENGINE to a Django backend, or leave the alias out "
                "with blacklist=."
            )
        entry["INNER_ENGINE"] = entry["ENGINE"]
        entry["ENGINE"] = SHARED_ENGINE
    return patched
