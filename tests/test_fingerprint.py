"""Fingerprints change with everything that shapes a template, and only then."""

from __future__ import annotations

import json
import subprocess
import sys

from testbed._fingerprint import (
    Fingerprint,
    migration_parts,
    model_parts,
    settings_part,
)


def test_parts_cover_each_app() -> None:
    assert {"migrations:auth", "migrations:contenttypes"} <= set(migration_parts())
    assert {"models:auth", "models:contenttypes"} <= set(model_parts())


def test_model_state_is_the_same_in_another_process() -> None:
    # Reuse across runs depends on it: no memory addresses, no set order.
    script = (
        "import json, django; django.setup(); "
        "from testbed._fingerprint import model_parts, migration_parts; "
        "print(json.dumps([model_parts(), migration_parts()]))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "PYTHONHASHSEED": seed,
                "PATH": "",
            },
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert json.loads(runs[0])[0] == model_parts()


def test_settings_part_ignores_password_and_sees_the_rest() -> None:
    base = {"ENGINE": "e", "HOST": "h", "PASSWORD": "a", "TEST": {"MIGRATE": True}}
    assert settings_part(base) == settings_part({**base, "PASSWORD": "b"})
    assert settings_part(base) != settings_part({**base, "HOST": "other"})
    assert settings_part(base) != settings_part({**base, "TEST": {"MIGRATE": False}})


def test_changes_since_names_the_parts() -> None:
    new = Fingerprint({"migrations:shop": "2", "models:shop": "1", "django": "5.2"})
    old = {
        "migrations:shop": "1",
        "models:shop": "1",
        "django": "5.2",
        "migrations:gone": "x",
    }
    assert new.changes_since(old) == ["migrations:gone", "migrations:shop"]
    assert new.digest != Fingerprint(old).digest
    assert new.digest == Fingerprint(dict(new.parts)).digest


def test_settings_with_callables_give_the_same_part_in_every_process() -> None:
    """A connection pool's check function in OPTIONS has a memory address
    in its text; the part must not."""
    script = (
        "import django; django.setup(); "
        "from testbed._fingerprint import settings_part; "
        "from django.db import connections; "
        "print(settings_part({'ENGINE': 'x', 'OPTIONS': {'pool': {'check': "
        "connections.close_all}, 'ssl': object()}}))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": ""},
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1


def test_routers_and_database_caches_are_part_of_the_schema(settings: object) -> None:
    from testbed._fingerprint import schema_settings_part

    before = schema_settings_part()
    settings.DATABASE_ROUTERS = ["tests.test_fingerprint.Router"]  # type: ignore[attr-defined]
    with_router = schema_settings_part()
    settings.CACHES = {  # type: ignore[attr-defined]
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_table",
        }
    }
    with_cache = schema_settings_part()
    assert len({before, with_router, with_cache}) == 3


class Router:
    """A router that routes nothing: enough to change the fingerprint."""
