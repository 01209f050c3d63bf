"""The ``testbed`` command: status, clean and build, on each engine."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from testbed.cli import main
from tests.conftest import unique_db_name
from tests.pytest_project import PluginProject, summary
from tests.utils import (
    create_foreign_database,
    databases_containing,
    drop_databases_containing,
)


@pytest.fixture
def project(
    pytester: pytest.Pytester, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PluginProject]:
    """A project on ``vendor`` with its test database kept by --reuse-db."""
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    name = unique_db_name("tbcli")
    proj = PluginProject(pytester, vendor, name)
    try:
        yield proj
    finally:
        drop_databases_containing(vendor, name)


def run_cli(project: PluginProject, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args, "--settings", "settings"],
        cwd=project.path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def status(project: PluginProject) -> list[dict[str, Any]]:
    result = run_cli(project, "status", "--json")
    assert result.returncode == 0, result.stderr
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    return entries


def foreign(project: PluginProject) -> str:
    """A database named like one of testbed's, made by someone else."""
    name = f"test_{project.name}_tbt_foreign"
    if project.vendor == "sqlite":
        path = project.path / f"{name}.sqlite3"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE precious (id int)")
        conn.close()
        return str(path)
    create_foreign_database(project.vendor, name)
    return name


def exists(project: PluginProject, name: str) -> bool:
    if project.vendor == "sqlite":
        return (project.path / name).exists()
    return name in databases_containing(project.vendor, project.name)


def test_status_clean_and_what_they_never_touch(project: PluginProject) -> None:
    project.run("--reuse-db").assert_outcomes(passed=4)
    other = foreign(project)
    entries = status(project)
    kinds = sorted((e["kind"], e["stale"], e["in_use"]) for e in entries)
    assert kinds == [("template", False, False), ("test", False, False)], entries
    assert all(
        e["vendor"] == project.vendor and e["alias"] == "default" for e in entries
    )
    assert all(len(e["fingerprint"]) == 12 and e["size_bytes"] for e in entries)
    assert other not in {e["name"] for e in entries}

    # A branch with an edited migration makes both out of date.
    project.schema(version=2, edited=True)
    stale = status(project)
    assert {e["kind"]: e["reason"] for e in stale} == {
        "template": "out of date: migrations:shop, models:shop changed",
        "test": "out of date: migrations:shop, models:shop changed",
    }
    dry = run_cli(project, "clean", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert re.search(
        r"^2 database\(s\), [\d.]+ [kMG]?B, would be dropped\.$", dry.stdout, re.M
    )
    assert len(status(project)) == 2

    cleaned = run_cli(project, "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.count("dropped ") == 2, cleaned.stdout
    assert status(project) == []

    everything = run_cli(project, "clean", "--all")
    assert everything.returncode == 0, everything.stderr
    assert "0 database(s) dropped" in everything.stdout
    foreign_name = other.rsplit("/", 1)[-1]
    assert exists(project, foreign_name), "testbed dropped a database it did not make"


def test_status_in_a_terminal(project: PluginProject) -> None:
    project.run("--reuse-db").assert_outcomes(passed=4)
    result = run_cli(project, "status")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "ALIAS", "ENGINE", "KIND", "NAME", "SIZE", "FINGERPRINT", "AGE", "STATE",
    ]  # fmt: skip
    assert any(row.split()[2] == "test" and row.endswith("current") for row in rows), (
        rows
    )
    assert rows[-1] == "2 database(s), 0 stale; `testbed clean` drops the stale ones."


def test_build_ahead_of_a_run(project: PluginProject) -> None:
    built = run_cli(project, "build")
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith(
        "testbed: 1 template(s) built (catalog), 0 reused; 1 schema(s) built (default)"
    ), built.stdout
    run = project.run("--reuse-db")
    run.assert_outcomes(passed=4)
    assert "0 schema(s) built, 1 reused" in summary(run)
    again = run_cli(project, "build", "catalog", "--json")
    assert again.returncode == 0, again.stderr
    figures = json.loads(again.stdout)
    assert figures["reused"] == ["catalog"]
    assert figures["built"] == []


def test_errors_name_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    assert main(["status"]) == 1
    assert capsys.readouterr().err == (
        "testbed: no Django settings. Pass --settings (e.g. --settings "
        "mysite.settings) or set DJANGO_SETTINGS_MODULE.\n"
    )
    assert main(["status", "--settings", "tests.settings", "--database", "nope"]) == 1
    assert capsys.readouterr().err == (
        "testbed: --database 'nope' is not in DATABASES (aliases: default, "
        "postgresql, mysql).\n"
    )


def test_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "testbed", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("status", "clean", "build"):
        assert f"    {command} " in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "testbed"], capture_output=True, text=True
    )
    assert missing.returncode == 2
    assert "the following arguments are required: COMMAND" in missing.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "testbed", "status", "--settings", "no_such_module"],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "testbed: cannot import settings 'no_such_module': No module named "
        "'no_such_module'. Check --settings and --pythonpath.\n"
    )
