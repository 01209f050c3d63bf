"""The demo: a shop whose tests need a realistic data set.

The "shop" template holds the migrated schema plus ~40,000 rows, built once
and reused while nothing it depends on changes. Tests get clones of it.
"""

from __future__ import annotations

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "testbed-demo"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "shop"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "demo.sqlite3",
    }
}

TEST_RUNNER = "testbed.runner.TemplateDatabaseRunner"
TESTBED = {
    "TEMPLATES": {
        "shop": {
            "DATABASE": "default",
            "LOADERS": ["shop/data/regions.sql", "shop.data.load"],
        },
    },
    "CACHE_DIR": BASE_DIR / ".testbed",
}
