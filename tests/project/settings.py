"""A small project that testbed's end-to-end tests copy and run.

TESTBED_ENGINE picks the engine (sqlite, postgresql, mysql) and
TESTBED_DBNAME the database name, so concurrent runs never collide.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "testbed-project"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "catalog"]
MIDDLEWARE: list[str] = []

ENGINE = os.environ.get("TESTBED_ENGINE", "sqlite")
NAME = os.environ.get("TESTBED_DBNAME", "testbed_project")


def database(name: str) -> dict[str, object]:
    if ENGINE == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "HOST": os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_PG_PORT", "5432"),
            "USER": os.environ.get("TESTBED_PG_USER", "root"),
        }
    if ENGINE == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "HOST": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TESTBED_MYSQL_USER", "root"),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    entry: dict[str, object] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(BASE_DIR / f"{name}.sqlite3"),
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"},
    }
    if os.environ.get("TESTBED_SQLITE_FILE"):
        entry["TEST"] = {"NAME": str(BASE_DIR / f"test_{name}.sqlite3")}
    return entry


DATABASES = {
    "default": database(NAME),
    "other": database(f"{NAME}_other"),
    # A database the project already has, copied by django-ttdb's TTDB setting.
    "legacy": database(f"{NAME}_legacy"),
}

TESTBED = {
    "TEMPLATES": {
        "catalog": {
            "DATABASE": "default",
            "LOADERS": [
                "catalog/sql/tags.sql",
                "authors",
                "catalog.loaders.load_books",
            ],
        },
        "catalog_other": {
            "DATABASE": "other",
            "LOADERS": ["catalog.loaders.load_other"],
        },
    },
}
if os.environ.get("TESTBED_CACHE_DIR"):
    TESTBED["CACHE_DIR"] = os.environ["TESTBED_CACHE_DIR"]
TTDB = ("legacy",)
TEST_RUNNER = os.environ.get("TESTBED_RUNNER", "testbed.runner.TemplateDatabaseRunner")
STATIC_URL = "/static/"
