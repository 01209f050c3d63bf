"""What testbed did in this process, for the end-of-run summary."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Stats:
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    clones: int = 0
    restores_tracked: int = 0
    restores_fresh: int = 0
    setup_seconds: float = 0.0
    # Why each rebuilt template was rebuilt, one line each.
    reasons: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def names(items: list[str]) -> str:
            return f" ({', '.join(items)})" if items else ""

        restores = self.restores_tracked + self.restores_fresh
        return (
            f"testbed: {len(self.built)} template(s) built{names(self.built)}, "
            f"{len(self.reused)} reused{names(self.reused)}; "
            f"{self.clones} clone(s) made; {restores} restore(s) "
            f"({self.restores_tracked} of changed tables, {self.restores_fresh} "
            f"fresh clones); {self.setup_seconds:.2f}s on database setup"
        )


stats = Stats()
_depth = 0


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
