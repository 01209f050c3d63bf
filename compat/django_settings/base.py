"""What every engine's settings share: those of the sdist's
``tests/test_sqlite.py``, which Django's suite expects of any settings
module, plus the runner."""

from __future__ import annotations

import os

_RUNNERS = {
    "vanilla": "compat.recording.RecordingRunner",
    "testbed": "compat.recording.RecordingTestbedRunner",
}

_variant = os.environ.get("COMPAT_DJANGO_VARIANT", "vanilla")
if _variant not in _RUNNERS:
    raise ValueError(
        f"COMPAT_DJANGO_VARIANT={_variant!r}: expected one of {', '.join(_RUNNERS)}"
    )
TEST_RUNNER = _RUNNERS[_variant]

SECRET_KEY = "django_tests_secret_key"

# The suite's choice: a fast hasher.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

USE_TZ = False

# Names of our own: test databases are test_<NAME>, so these runs never
# touch testbed's own test databases (test_testbed_tests...) nor a
# developer's. Each alias needs a name distinct from the other's.
NAMES = {"default": "compat_django", "other": "compat_django_other"}
