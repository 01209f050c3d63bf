"""A project whose suite is plain Django: TransactionTestCase, serialized
rollback, available_apps, LiveServerTestCase. testbed's drop-in tests run it
with Django's runner and with testbed's, and both must pass.

TESTBED_ENGINE picks the engine (sqlite, postgresql, mysql) and
TESTBED_DBNAME the database name, so concurrent runs never collide.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "testbed-dropin"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SITE_ID = 1
ENGINE = os.environ.get("TESTBED_ENGINE", "sqlite")
NAME = os.environ.get("TESTBED_DBNAME", "testbed_dropin")
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sites",
    "shelf",
]
if ENGINE == "postgresql":
    # Its connection_created receiver looks every connection up by alias.
    INSTALLED_APPS.append("django.contrib.postgres")
MIDDLEWARE: list[str] = []


def database(name: str) -> dict[str, object]:
    if ENGINE == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "HOST": os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_PG_PORT", "5432"),
            "USER": os.environ.get("TESTBED_PG_USER", "root"),
            "PASSWORD": os.environ.get("TESTBED_PG_PASSWORD", ""),
        }
    if ENGINE == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "HOST": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TESTBED_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("TESTBED_MYSQL_PASSWORD", ""),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    entry: dict[str, object] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / f"{name}.sqlite3"),
    }
    if os.environ.get("TESTBED_SQLITE_FILE"):
        entry["TEST"] = {"NAME": str(BASE_DIR / f"test_{name}.sqlite3")}
    return entry


DATABASES = {"default": database(NAME), "other": database(f"{NAME}_other")}
TESTBED: dict[str, object] = {}
if os.environ.get("TESTBED_CACHE_DIR"):
    TESTBED["CACHE_DIR"] = os.environ["TESTBED_CACHE_DIR"]
if os.environ.get("TESTBED_TRANSACTIONAL_RESET"):
    TESTBED["TRANSACTIONAL_RESET"] = os.environ["TESTBED_TRANSACTIONAL_RESET"]
TEST_RUNNER = os.environ.get("TESTBED_RUNNER", "testbed.runner.TestbedRunner")
STATIC_URL = "/static/"
