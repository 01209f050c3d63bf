"""testbed's own settings that every layer reads, below them all: the
``TESTBED`` dict itself, its cache directories, and the error a bad setting
raises. Templates and test database names are read in ``_config``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from testbed._errors import TestbedError

__all__ = [
    "ConfigurationError",
    "cache_dir",
    "check_keys",
    "project_cache_dir",
    "testbed_settings",
]

_KNOWN_KEYS = {
    "TEMPLATES",
    "LOCK_TIMEOUT",
    "CACHE_DIR",
    "POSTGRESQL_STRATEGY",
    "TRANSACTIONAL_RESET",
}


class ConfigurationError(TestbedError):
    """A testbed setting is missing or wrong; the message names it."""


def testbed_settings() -> dict[str, Any]:
    from django.conf import settings

    value = getattr(settings, "TESTBED", {})
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"settings.TESTBED must be a dict, not {type(value).__name__}."
        )
    check_keys(value, _KNOWN_KEYS, "settings.TESTBED")
    return value


def check_keys(value: dict[str, Any], known: set[str], where: str) -> None:
    """Refuse a typo in a settings dict rather than ignore the key."""
    unknown = set(value) - known
    if unknown:
        raise ConfigurationError(
            f"{where} has unknown key(s) {', '.join(sorted(unknown))}; "
            f"known keys are {', '.join(sorted(known))}."
        )


def cache_dir() -> Path:
    """testbed's directory for lock files: one per user, shared by every
    project, so that any two processes building one template take turns."""
    value = testbed_settings().get("CACHE_DIR")
    if value:
        path = Path(value)
    else:
        path = Path(tempfile.gettempdir()) / f"django-testbed-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_cache_dir() -> Path:
    """Where the templates of in-memory SQLite test databases are kept:
    ``TESTBED['CACHE_DIR']``, or a directory of this project's own under
    the shared one, so that one project's ``testbed clean`` never judges
    another project's templates."""
    if testbed_settings().get("CACHE_DIR"):
        return cache_dir()
    import hashlib
    import sys

    from django.conf import settings

    module = str(getattr(settings, "SETTINGS_MODULE", "") or "")
    where = getattr(sys.modules.get(module), "__file__", None) or os.getcwd()
    key = hashlib.sha256(f"{module}:{os.path.realpath(where)}".encode()).hexdigest()[
        :12
    ]
    path = cache_dir() / f"project-{key}"
    path.mkdir(parents=True, exist_ok=True)
    return path
