"""Template loaders: SQL files, fixtures and callables, run once per build."""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed._config import Loader
from testbed._settings import ConfigurationError

_FIXTURE_SUFFIXES = (".json", ".xml", ".yaml", ".yml", ".jsonl")
_COMPRESSED = ("", ".gz", ".zip", ".bz2", ".lzma", ".xz")


@dataclass(frozen=True)
class ResolvedLoader:
    kind: str  # "sql", "fixture" or "callable"
    label: str
    target: Any  # a Path, a fixture label, or the callable

    def fingerprint(self) -> str:
        """A digest of what this loader would put in the database."""
        h = hashlib.sha256(f"{self.kind}:{self.label}".encode())
        if self.kind == "sql":
            h.update(Path(self.target).read_bytes())
        elif self.kind == "fixture":
            for path in _fixture_files(self.label):
                h.update(str(path).encode())
                h.update(path.read_bytes())
        else:
            h.update(_code_of(self.target).encode())
        return h.hexdigest()

    def run(self, using: str) -> None:
        from django.core.management import call_command
        from django.db import connections

        if self.kind == "fixture":
            call_command("loaddata", self.label, database=using, verbosity=0)
        elif self.kind == "sql":
            import sqlparse

            sql = Path(self.target).read_text()
            with connections[using].cursor() as cursor:
                for statement in sqlparse.split(sql):
                    if sqlparse.format(statement, strip_comments=True).strip(" ;\n"):
                        cursor.execute(statement)
        else:
            self.target(using=using)


def _code_of(func: Callable[..., Any]) -> str:
    # The whole module, not just the function: loaders call helpers.
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    for obj in (module, func):
        if obj is None:
            continue
        try:
            return inspect.getsource(obj)
        except (OSError, TypeError):
            continue
    return getattr(func, "__qualname__", repr(func))


def _is_fixture_path(label: str) -> bool:
    lowered = label.lower()
    return any(lowered.endswith(s + c) for s in _FIXTURE_SUFFIXES for c in _COMPRESSED)


def _fixture_files(label: str) -> list[Path]:
    """The files ``loaddata label`` would read, as Django finds them."""
    from django.core import serializers
    from django.core.management.commands.loaddata import Command

    command = Command()
    command.serialization_formats = serializers.get_public_serializer_formats()
    # find_fixtures reads these attributes, which handle() normally sets.
    attributes: dict[str, Any] = {
        "app_label": None,
        "verbosity": 0,
        "using": "default",
        "format": None,
    }
    for key, value in attributes.items():
        setattr(command, key, value)
    command.ignore = False
    command.excluded_models, command.excluded_apps = set(), set()
    files: list[Path] = []
    for path, _, _ in command.find_fixtures(label):
        files.append(Path(path))
    return sorted(files)


def resolve(loader: Loader, *, setting: str) -> ResolvedLoader:
    """Classify one ``LOADERS`` entry; raise naming ``setting`` if it is bad."""
    __tracebackhide__ = True
    if callable(loader):
        label = f"{getattr(loader, '__module__', '?')}.{getattr(loader, '__qualname__', '?')}"
        return ResolvedLoader("callable", label, loader)
    if not isinstance(loader, str) or not loader:  # type: ignore[redundant-expr]
        raise ConfigurationError(
            f"{setting}['LOADERS'] entries must be SQL file paths, fixture "
            f"names or dotted paths to callables, not {loader!r}."
        )
    if loader.lower().endswith(".sql"):
        path = _absolute(loader)
        if not path.is_file():
            raise ConfigurationError(
                f"{setting}['LOADERS'] names SQL file {loader!r}, which does not "
                f"exist (looked at {path})."
            )
        return ResolvedLoader("sql", loader, path)
    if not _is_fixture_path(loader) and "." in loader.replace(":", "."):
        target = _import_callable(loader)
        if target is not None:
            return ResolvedLoader("callable", loader, target)
    from django.core.management.base import CommandError

    try:
        files = _fixture_files(loader)
    except CommandError:
        files = []  # loaddata's "No fixture named ...": the message below says more
    if not files:
        raise ConfigurationError(
            f"{setting}['LOADERS'] entry {loader!r} is not a SQL file, an "
            "importable callable or a fixture loaddata can find (searched "
            "FIXTURE_DIRS and each app's fixtures/ directory)."
        )
    return ResolvedLoader("fixture", loader, loader)


def _absolute(path: str) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    from django.conf import settings

    base = getattr(settings, "BASE_DIR", None)
    if base is not None and (Path(base) / p).exists():
        return Path(base) / p
    return p.resolve()


def _import_callable(dotted: str) -> Callable[..., Any] | None:
    import importlib

    if ":" in dotted:
        module_name, _, attr = dotted.partition(":")
    else:
        module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None  # not a module path at all: maybe a fixture name
        raise
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target if callable(target) else None
