"""django-testbed: every Django test gets the database state it needs.

The public names load on first use, so importing ``testbed`` (as the
pytest plugin and the CLI do) never imports Django before its settings
are configured.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed._errors import TestbedError
    from testbed._safety import UnsafeOperation
    from testbed._settings import ConfigurationError
    from testbed._sharing import SharingError
    from testbed._templates import BuildError
    from testbed.backends.shared import patch_databases
    from testbed.concurrency import (
        ConcurrencyError,
        TerminatedProcessError,
        WrappedError,
        call_concurrently,
        make_concurrent_calls,
    )
    from testbed.testcases import (
        TemplateDBLiveServerTestCase,
        TemplateDBTestCase,
        TemplateDBTransactionTestCase,
        use_template_database,
    )

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "ConcurrencyError",
    "ConfigurationError",
    "SharingError",
    "TemplateDBLiveServerTestCase",
    "TemplateDBTestCase",
    "TemplateDBTransactionTestCase",
    "TerminatedProcessError",
    "TestbedError",
    "UnsafeOperation",
    "WrappedError",
    "call_concurrently",
    "make_concurrent_calls",
    "patch_databases",
    "use_template_database",
]

# Where each public name lives.
_LOCATIONS = {
    "BuildError": "testbed._templates",
    "ConcurrencyError": "testbed.concurrency",
    "ConfigurationError": "testbed._settings",
    "SharingError": "testbed._sharing",
    "TemplateDBLiveServerTestCase": "testbed.testcases",
    "TemplateDBTestCase": "testbed.testcases",
    "TemplateDBTransactionTestCase": "testbed.testcases",
    "TerminatedProcessError": "testbed.concurrency",
    "TestbedError": "testbed._errors",
    "UnsafeOperation": "testbed._safety",
    "WrappedError": "testbed.concurrency",
    "call_concurrently": "testbed.concurrency",
    "make_concurrent_calls": "testbed.concurrency",
    "patch_databases": "testbed.backends.shared",
    "use_template_database": "testbed.testcases",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LOCATIONS[name]
    except KeyError:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}") from None
    # Test modules import testbed's names before the runner creates test
    # databases: record DATABASES as the project configured them.
    from testbed._config import snapshot_databases

    snapshot_databases()
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
