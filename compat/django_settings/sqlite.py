"""Django's suite on SQLite, as its own ``tests/test_sqlite.py`` runs it:
in-memory test databases."""

from __future__ import annotations

from compat.django_settings.base import *  # noqa: F403

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3"},
    "other": {"ENGINE": "django.db.backends.sqlite3"},
}
