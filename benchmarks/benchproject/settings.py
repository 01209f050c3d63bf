"""Settings for the benchmark project.

The engine comes from ``BENCHPROJECT_ENGINE``: ``sqlite`` (a file test
database, the default), ``sqlite-memory`` (Django's in-memory test
database), ``postgresql`` or ``mysql``. Servers are found through the same
environment variables as testbed's own tests (TESTBED_PG_HOST,
TESTBED_MYSQL_HOST, ...), defaulting to the local ones.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
# SQLite databases (and testbed's templates and lock files next to them) go
# to the benchmarks' git-ignored results directory, not the source tree.
SQLITE_DIR = Path(
    os.environ.get("BENCHPROJECT_SQLITE_DIR", BASE_DIR.parent / "results" / "sqlite")
)
SQLITE_DIR.mkdir(parents=True, exist_ok=True)

ENGINE = os.environ.get("BENCHPROJECT_ENGINE", "sqlite")
# Lets benchmarks run testbed and plain Django side by side on their own names.
DBNAME = os.environ.get("BENCHPROJECT_DBNAME", "benchproject")

SECRET_KEY = "benchproject"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "benchproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "benchproject.accounts",
    "benchproject.catalog",
    "benchproject.sales",
]
if os.environ.get("BENCHPROJECT_DATASET"):
    # Loads the data set in a data migration (benchmarks.transactional).
    INSTALLED_APPS.append("benchproject.dataset")


def _database(engine: str) -> dict[str, object]:
    if engine == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_DIR / f"{DBNAME}.sqlite3"),
            "TEST": {"NAME": str(SQLITE_DIR / f"test_{DBNAME}.sqlite3")},
        }
    if engine == "sqlite-memory":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_DIR / f"{DBNAME}.sqlite3"),
        }
    if engine == "postgresql":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DBNAME,
            "HOST": os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_PG_PORT", "5432"),
            "USER": os.environ.get("TESTBED_PG_USER", "root"),
            "PASSWORD": os.environ.get("TESTBED_PG_PASSWORD", ""),
        }
    if engine == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": DBNAME,
            "HOST": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TESTBED_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("TESTBED_MYSQL_PASSWORD", ""),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
        }
    raise ValueError(
        f"BENCHPROJECT_ENGINE={engine!r}: use sqlite, sqlite-memory, postgresql or mysql"
    )


DATABASES = {"default": _database(ENGINE)}

# One template per data set; testbed builds a template the first time a test
# asks for it.
TESTBED = {
    "TEMPLATES": {
        "small": {
            "DATABASE": "default",
            "LOADERS": ["benchproject.loaders.load_small"],
        },
        "medium": {
            "DATABASE": "default",
            "LOADERS": ["benchproject.loaders.load_medium"],
        },
    },
}

if os.environ.get("BENCHPROJECT_RUNNER"):
    TEST_RUNNER = os.environ["BENCHPROJECT_RUNNER"]
