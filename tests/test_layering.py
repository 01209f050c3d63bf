"""The package's layering, read from its imports: vendor clone engines, then
core, then faces. Engines import only each other and the bottom modules
(errors and settings); core never imports a face; a face never imports
another face. Function-level imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import testbed

SRC = Path(testbed.__file__).resolve().parent
BOTTOM = {"_errors", "_settings"}
# Top-level modules and subpackages that are faces, by the face they belong to.
FACES = {
    "testcases": "testcases",
    "_live_testcases": "testcases",
    "runner": "runner",
    "pytest_plugin": "pytest_plugin",
    "cli": "cli",
    "__main__": "cli",
    "concurrency": "concurrency",
    "backends": "backends",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def imported(path: Path) -> set[str]:
    """Every ``testbed`` module ``path`` imports (``from testbed import x``
    counts as ``testbed.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "testbed":
                found |= {f"testbed.{alias.name}" for alias in node.names}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.startswith("testbed.")}


def top(name: str) -> str:
    return name.split(".")[1]


def layer(name: str) -> str:
    first = top(name)
    if first in FACES:
        return f"face {FACES[first]}"
    if first == "_engines":
        return "engines"
    return "bottom" if first in BOTTOM else "core"


def problems(name: str, imports: set[str]) -> list[str]:
    mine = layer(name)
    found = []
    for target in sorted(imports):
        theirs = layer(target)
        first = top(target)
        if not (SRC / first).exists() and not (SRC / f"{first}.py").exists():
            # `from testbed import __version__` and the like: the package's
            # own attributes, not a module.
            continue
        if mine == "engines" and theirs not in ("engines", "bottom"):
            found.append(f"{name} (an engine) imports {target} ({theirs})")
        elif mine == "bottom" and theirs != "bottom":
            found.append(f"{name} (bottom) imports {target} ({theirs})")
        elif mine == "core" and theirs.startswith("face"):
            found.append(f"{name} (core) imports {target} ({theirs})")
        elif mine.startswith("face") and theirs.startswith("face") and mine != theirs:
            found.append(f"{name} ({mine}) imports {target} ({theirs})")
    return found


MODULES = sorted(path for path in SRC.rglob("*.py") if module_name(path) != "testbed")


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_follow_the_layers(path: Path) -> None:
    assert problems(module_name(path), imported(path)) == []


@pytest.mark.parametrize(
    ("name", "imports", "expected"),
    [
        (
            "testbed._engines.sqlite",
            {"testbed._config"},
            ["testbed._engines.sqlite (an engine) imports testbed._config (core)"],
        ),
        (
            "testbed._templates",
            {"testbed.runner"},
            ["testbed._templates (core) imports testbed.runner (face runner)"],
        ),
        (
            "testbed.pytest_plugin._setup",
            {"testbed.runner", "testbed._testdb", "testbed.pytest_plugin._templates"},
            [
                "testbed.pytest_plugin._setup (face pytest_plugin) imports "
                "testbed.runner (face runner)"
            ],
        ),
        (
            "testbed._settings",
            {"testbed._errors", "testbed._config"},
            ["testbed._settings (bottom) imports testbed._config (core)"],
        ),
    ],
)
def test_a_crossing_is_found(name: str, imports: set[str], expected: list[str]) -> None:
    assert problems(name, imports) == expected
