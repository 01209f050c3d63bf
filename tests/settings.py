"""Settings for testbed's own in-process tests.

Three aliases, one per engine. Servers are found through the environment
(TESTBED_PG_HOST, TESTBED_MYSQL_HOST, ...), defaulting to the local ones.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "testbed-tests"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "tests.testapp",
    "tests.races",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def postgresql(name: str) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("TESTBED_PG_PORT", "5432"),
        "USER": os.environ.get("TESTBED_PG_USER", "root"),
        "PASSWORD": os.environ.get("TESTBED_PG_PASSWORD", ""),
    }


def mysql(name: str) -> dict[str, object]:
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "HOST": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
        "USER": os.environ.get("TESTBED_MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("TESTBED_MYSQL_PASSWORD", ""),
        "OPTIONS": {"charset": "utf8mb4"},
    }


DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / "testbed_tests.sqlite3"),
    },
    "postgresql": postgresql("testbed_tests"),
    "mysql": mysql("testbed_tests"),
}
