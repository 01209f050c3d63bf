"""Settings errors name the setting that fixes them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from testbed._config import template, templates
from testbed._settings import ConfigurationError


def error(**settings: Any) -> str:
    with override_settings(**settings), pytest.raises(ConfigurationError) as excinfo:
        templates()
    return str(excinfo.value)


def test_templates_are_read() -> None:
    with override_settings(
        TESTBED={
            "TEMPLATES": {"a": {"LOADERS": ["x.sql"]}, "b": {"DATABASE": "mysql"}}
        },
        TTDB=("postgresql",),
    ):
        specs = templates()
    assert specs["a"].alias == "default"
    assert specs["a"].loaders == ("x.sql",)
    assert specs["b"].alias == "mysql"
    assert specs["postgresql"].source == "postgresql"
    assert specs["postgresql"].aliases == ("default", "postgresql")


def test_unknown_template_lists_the_known_ones() -> None:
    with (
        override_settings(TESTBED={"TEMPLATES": {"a": {}}}),
        pytest.raises(ConfigurationError) as excinfo,
    ):
        template("nope")
    assert excinfo.value.args == (
        "Unknown template database 'nope' ('a'). Define it in settings.TESTBED = "
        "{'TEMPLATES': {'nope': {'DATABASE': 'default', 'LOADERS': [...]}}}, or "
        "list an alias in settings.TTDB.",
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"TESTBED": []}, "settings.TESTBED must be a dict, not list."),
        (
            {"TESTBED": {"TEMPLATE": {}}},
            "settings.TESTBED has unknown key(s) TEMPLATE; known keys are "
            "CACHE_DIR, LOCK_TIMEOUT, POSTGRESQL_STRATEGY, TEMPLATES, "
            "TRANSACTIONAL_RESET.",
        ),
        (
            {"TESTBED": {"TEMPLATES": {"a": {"DATABASE": "nope"}}}},
            "TESTBED['TEMPLATES']['a']['DATABASE'] names database alias 'nope', "
            "which is not in DATABASES (aliases: 'default', 'postgresql', 'mysql').",
        ),
        (
            {"TESTBED": {"TEMPLATES": {"a": {"LOADERS": "x.sql"}}}},
            "TESTBED['TEMPLATES']['a']['LOADERS'] must be a list of SQL files, "
            "fixtures and dotted paths to callables, not 'x.sql'.",
        ),
        (
            {"TESTBED": {"TEMPLATES": {"a": {"LOADER": []}}}},
            "TESTBED['TEMPLATES']['a'] has unknown key(s) LOADER; known keys are "
            "DATABASE, LOADERS, SOURCE.",
        ),
        (
            {"TTDB": "default"},
            "settings.TTDB must be a list or tuple of DATABASES aliases, not 'default'.",
        ),
        (
            {"TTDB": ["default"], "TESTBED": {"TEMPLATES": {"default": {}}}},
            "'default' is both in settings.TTDB and in TESTBED['TEMPLATES']; keep one of them.",
        ),
    ],
)
def test_bad_settings(settings: dict[str, Any], message: str) -> None:
    assert error(**settings) == message
