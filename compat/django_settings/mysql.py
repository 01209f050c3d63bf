"""Django's suite on MySQL/MariaDB. The server is found as testbed's own
tests find it (TESTBED_MYSQL_HOST, ...), defaulting to the local one."""

from __future__ import annotations

import os

from compat.django_settings.base import *  # noqa: F403
from compat.django_settings.base import NAMES

DATABASES = {
    alias: {
        "ENGINE": "django.db.backends.mysql",
        "NAME": name,
        "HOST": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
        "USER": os.environ.get("TESTBED_MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("TESTBED_MYSQL_PASSWORD", ""),
        # Django's connections speak utf8mb4 (its default charset since
        # 5.x): test databases in utf8mb3 fail its emoji tests and mix
        # collations ("Illegal mix of collations"), so they are made utf8mb4
        # whatever the server's default, with that charset's default
        # collation.
        "TEST": {"CHARSET": "utf8mb4"},
    }
    for alias, name in NAMES.items()
}
