"""What testbed did in this process, for the end-of-run summary."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Stats:
    # Templates of the project's TESTBED / TTDB settings.
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    # Schema templates: each alias's migrated (or synced) schema.
    schemas_built: list[str] = field(default_factory=list)
    schemas_reused: list[str] = field(default_factory=list)
    # Test databases (Django's, xdist workers', --parallel clones).
    databases_cloned: int = 0
    databases_reused: int = 0
    # Working clones of templates, and restores of them after tests.
    clones: int = 0
    restores_tracked: int = 0
    restores_fresh: int = 0
    setup_seconds: float = 0.0
    # Processes whose figures were merged in (xdist workers).
    workers: int = 0
    # One line each: why something was rebuilt, or which name was used instead.
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def names(items: list[str]) -> str:
            return f" ({', '.join(dict.fromkeys(items))})" if items else ""

        restores = self.restores_tracked + self.restores_fresh
        where = f" across {self.workers} workers" if self.workers > 1 else ""
        return (
            f"testbed: {len(self.built)} template(s) built{names(self.built)}, "
            f"{len(self.reused)} reused{names(self.reused)}; "
            f"{len(self.schemas_built)} schema(s) built{names(self.schemas_built)}, "
            f"{len(self.schemas_reused)} reused; "
            f"{self.databases_cloned} test database(s) cloned, "
            f"{self.databases_reused} reused; "
            f"{self.clones} clone(s) made; {restores} restore(s) "
            f"({self.restores_tracked} of changed tables, {self.restores_fresh} "
            f"fresh clones); {self.setup_seconds:.2f}s on database setup{where}"
        )

    @property
    def active(self) -> bool:
        """Whether testbed did anything worth a summary."""
        return bool(
            self.built
            or self.reused
            or self.schemas_built
            or self.schemas_reused
            or self.databases_cloned
            or self.databases_reused
            or self.clones
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def merge(self, other: dict[str, Any]) -> None:
        """Add another process's ``to_dict()`` to these figures."""
        for f in fields(self):
            value = other.get(f.name)
            if value is None or f.name == "workers":
                continue
            if f.name == "notes":
                self.notes.extend(n for n in value if n not in self.notes)
            else:
                setattr(self, f.name, getattr(self, f.name) + value)
        self.workers += max(1, int(other.get("workers") or 0))


stats = Stats()
# Whether notes go to stderr as they happen (manage.py test) or are only
# collected for a summary (pytest, whose capture would swallow them).
echo = True
_depth = 0


def note(message: str) -> None:
    """Report one line: a rebuild and why, a name used instead of another."""
    line = f"testbed: {message}"
    stats.notes.append(line)
    if echo:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


@contextmanager
def timed() -> Iterator[None]:
    """Count the time spent inside as database set-up (nested calls once)."""
    global _depth
    start = time.perf_counter()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            stats.setup_seconds += time.perf_counter() - start
