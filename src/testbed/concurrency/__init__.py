"""Concurrent calls against the test database, in processes that really overlap.

django-concurrent-test-helper's API (``call_concurrently``,
``make_concurrent_calls``, ``WrappedError``, ``TerminatedProcessError``),
without its ``INSTALLED_APPS`` entry or ``manage.py`` command::

    results = call_concurrently(5, withdraw, account_id=account.pk, amount=10)

Modules: ``_api`` (the two functions), ``_guard`` (which databases, and can
the calls see the test's data), ``_pool`` (warm workers and the start
barrier), ``_worker`` (one worker process), ``_child`` (the code it runs),
``_threads`` (``threads=True``), ``_wire`` (pickling across processes),
``_errors``.
"""

from __future__ import annotations

from testbed.concurrency._api import call_concurrently, make_concurrent_calls
from testbed.concurrency._errors import (
    CallTimeoutError,
    ConcurrencyError,
    CrashedProcessError,
    RemoteError,
    TerminatedProcessError,
    UnsendableError,
    UnsharedDatabaseError,
    WrappedError,
)

# Shown (in tracebacks and type names) where users import them from.
for _error in (
    CallTimeoutError,
    ConcurrencyError,
    CrashedProcessError,
    RemoteError,
    TerminatedProcessError,
    UnsendableError,
    UnsharedDatabaseError,
    WrappedError,
):
    _error.__module__ = __name__

__all__ = [
    "CallTimeoutError",
    "ConcurrencyError",
    "CrashedProcessError",
    "RemoteError",
    "TerminatedProcessError",
    "UnsendableError",
    "UnsharedDatabaseError",
    "WrappedError",
    "call_concurrently",
    "make_concurrent_calls",
]
