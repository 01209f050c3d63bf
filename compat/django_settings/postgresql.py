"""Django's suite on PostgreSQL. The server is found as testbed's own
tests find it (TESTBED_PG_HOST, ...), defaulting to the local one."""

from __future__ import annotations

import os

from compat.django_settings.base import *  # noqa: F403
from compat.django_settings.base import NAMES

DATABASES = {
    alias: {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("TESTBED_PG_PORT", "5432"),
        "USER": os.environ.get("TESTBED_PG_USER", "root"),
        "PASSWORD": os.environ.get("TESTBED_PG_PASSWORD", ""),
    }
    for alias, name in NAMES.items()
}
