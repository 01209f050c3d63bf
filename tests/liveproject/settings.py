"""A small project for testbed's shared-connection tests, copied and run by
tests/test_live_server.py under ``manage.py test`` and pytest.

TESTBED_ENGINE picks the engine (sqlite, postgresql, mysql), TESTBED_DBNAME
the database name (so concurrent runs never collide), and
TESTBED_SHARED_BACKEND=1 puts DATABASES on testbed.backends.shared.
"""

from __future__ import annotations

import os
from pathlib import Path

import testbed

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "testbed-liveproject"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
ROOT_URLCONF = "urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "notes",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]
STATIC_URL = "/static/"
LOGIN_REDIRECT_URL = "/notes/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The tests make views fail on purpose; their tracebacks are noise.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django.request": {"level": "CRITICAL"}},
}

ENGINE = os.environ.get("TESTBED_ENGINE", "sqlite")
NAME = os.environ.get("TESTBED_DBNAME", "testbed_live")


def database(name: str) -> dict[str, object]:
    if ENGINE == "postgresql":
        entry: dict[str, object] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "HOST": os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_PG_PORT", "5432"),
            "USER": os.environ.get("TESTBED_PG_USER", "root"),
            "PASSWORD": os.environ.get("TESTBED_PG_PASSWORD", ""),
        }
    elif ENGINE == "mysql":
        entry = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "HOST": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
            "USER": os.environ.get("TESTBED_MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("TESTBED_MYSQL_PASSWORD", ""),
            "OPTIONS": {"charset": "utf8mb4"},
        }
    else:
        entry = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / f"{name}.sqlite3"),
            # A file test database: in-memory ones are shared by Django already.
            "TEST": {"NAME": str(BASE_DIR / f"test_{name}.sqlite3")},
        }
    # Every view runs in an atomic block, nested in the test's transaction.
    entry["ATOMIC_REQUESTS"] = True
    return entry


DATABASES = {"default": database(NAME)}
if os.environ.get("TESTBED_SHARED_BACKEND"):
    DATABASES = testbed.patch_databases(DATABASES)

TESTBED = {
    "TEMPLATES": {
        "notes": {"DATABASE": "default", "LOADERS": ["notes.loaders.load"]},
    },
}
if os.environ.get("TESTBED_CACHE_DIR"):
    TESTBED["CACHE_DIR"] = os.environ["TESTBED_CACHE_DIR"]
