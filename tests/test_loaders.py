"""Classifying LOADERS entries, and what changes their fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed._loaders import resolve
from testbed._settings import ConfigurationError

SETTING = "TESTBED['TEMPLATES']['t']"


def sample_loader(*, using: str) -> None:
    """A callable loader."""


def test_sql_files(tmp_path: Path) -> None:
    sql = tmp_path / "data.sql"
    sql.write_text("INSERT INTO t VALUES (1);")
    loader = resolve(str(sql), setting=SETTING)
    assert (loader.kind, loader.target) == ("sql", sql)
    before = loader.fingerprint()
    sql.write_text("INSERT INTO t VALUES (2);")
    assert loader.fingerprint() != before


def test_missing_sql_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sql"
    with pytest.raises(ConfigurationError) as excinfo:
        resolve(str(missing), setting=SETTING)
    assert excinfo.value.args == (
        f"{SETTING}['LOADERS'] names SQL file {str(missing)!r}, which does not "
        f"exist (looked at {missing}).",
    )


def test_callables_by_object_and_by_dotted_path() -> None:
    by_object = resolve(sample_loader, setting=SETTING)
    by_path = resolve("tests.test_loaders.sample_loader", setting=SETTING)
    by_colon = resolve("tests.test_loaders:sample_loader", setting=SETTING)
    assert by_object.kind == by_path.kind == by_colon.kind == "callable"
    assert by_path.target is sample_loader
    assert by_colon.target is sample_loader
    assert by_path.fingerprint() == by_path.fingerprint()


def test_fixtures_found_by_loaddata(tmp_path: Path, settings: object) -> None:
    fixture = tmp_path / "people.json"
    fixture.write_text("[]")
    settings.FIXTURE_DIRS = [str(tmp_path)]  # type: ignore[attr-defined]
    loader = resolve("people", setting=SETTING)
    assert loader.kind == "fixture"
    before = loader.fingerprint()
    fixture.write_text("[ ]")
    assert loader.fingerprint() != before


def test_nothing_matches() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        resolve("no_such_thing", setting=SETTING)
    assert excinfo.value.args == (
        f"{SETTING}['LOADERS'] entry 'no_such_thing' is not a SQL file, an "
        "importable callable or a fixture loaddata can find (searched "
        "FIXTURE_DIRS and each app's fixtures/ directory).",
    )


def test_a_broken_loader_module_is_not_mistaken_for_a_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_loaders.py").write_text("import does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="does_not_exist_anywhere"):
        resolve("broken_loaders.load", setting=SETTING)


@pytest.mark.parametrize("bad", [None, "", 3])
def test_bad_entries(bad: object) -> None:
    with pytest.raises(ConfigurationError, match=r"entries must be SQL file paths"):
        resolve(bad, setting=SETTING)  # type: ignore[arg-type]
