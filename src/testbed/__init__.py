"""django-testbed: every Django test gets the database state it needs."""

from __future__ import annotations

from testbed._config import ConfigurationError, snapshot_databases
from testbed._safety import TestbedError, UnsafeOperation
from testbed._sharing import SharingError
from testbed._templates import BuildError
from testbed.backends.shared import patch_databases
from testbed.testcases import (
    TemplateDBLiveServerTestCase,
    TemplateDBTestCase,
    TemplateDBTransactionTestCase,
    use_template_database,
)

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "ConfigurationError",
    "SharingError",
    "TemplateDBLiveServerTestCase",
    "TemplateDBTestCase",
    "TemplateDBTransactionTestCase",
    "TestbedError",
    "UnsafeOperation",
    "patch_databases",
    "use_template_database",
]

# Record DATABASES as configured, before test set-up renames anything. Test
# modules import testbed before the runner creates test databases.
try:
    snapshot_databases()
except Exception:  # settings not importable yet; snapshotted on first use
    pass
