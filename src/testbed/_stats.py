"""What testbed did in this process, for the end-of-run summary."""

from __future__ import annotations

import contextlib
import os
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
    # Transactional tests' databases left as Django's flush would, by
    # emptying only what holds rows (of them, those that ran post_migrate
    # again), flushed by Django, and the serialized_rollback loads answered
    # from the baseline.
    resets_rows: int = 0
    resets_post_migrate: int = 0
    resets_flushed: int = 0
    serialized_restores: int = 0
    setup_seconds: float = 0.0
    # Processes whose figures were merged in (xdist workers).
    workers: int = 0
    # One line each: why something was rebuilt, or which name was used instead.
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def names(items: list[str]) -> str:
            return f" ({', '.join(dict.fromkeys(items))})" if items else ""

        def count(items: list[str]) -> int:
            # Workers each find the same template: count it once.
            return len(set(items))

        restores = self.restores_tracked + self.restores_fresh
        where = f" across {self.workers} workers" if self.workers > 1 else ""
        resets = ""
        if self.resets_rows or self.resets_flushed or self.serialized_restores:
            resets = (
                f"; {self.resets_rows + self.resets_flushed} transactional "
                f"reset(s) ({self.resets_rows} of changed tables, "
                f"{self.resets_post_migrate} re-running post_migrate, "
                f"{self.resets_flushed} flushed by Django)"
            )
            if self.serialized_restores:
                resets += (
                    f", {self.serialized_restores} serialized_rollback "
                    "load(s) from the baseline"
                )
        return (
            f"testbed: {count(self.built)} template(s) built{names(self.built)}, "
            f"{count(self.reused)} reused{names(self.reused)}; "
            f"{count(self.schemas_built)} schema(s) built{names(self.schemas_built)}, "
            f"{count(self.schemas_reused)} reused; "
            f"{self.databases_cloned} test database(s) cloned, "
            f"{self.databases_reused} reused; "
            f"{self.clones} clone(s) made; {restores} restore(s) "
            f"({self.restores_tracked} of changed tables, {self.restores_fresh} "
            f"fresh clones){resets}; {self.setup_seconds:.2f}s on database "
            f"setup{where}"
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
            or self.resets_rows
            or self.resets_flushed
            or self.serialized_restores
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
# "<pid>:<directory>": processes forked or spawned by <pid> (Django's
# --parallel workers) write their figures there when they exit.
SPOOL = "TESTBED_STATS_SPOOL"
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


def spool_children() -> None:
    """Have the worker processes this process starts report their figures."""
    import tempfile

    if os.environ.get(SPOOL, "").startswith(f"{os.getpid()}:"):
        return
    os.environ[SPOOL] = f"{os.getpid()}:{tempfile.mkdtemp(prefix='testbed-stats-')}"


def collect_children() -> None:
    """Add what the worker processes reported to these figures."""
    import json
    import shutil
    from pathlib import Path

    owner, _, directory = os.environ.get(SPOOL, "").partition(":")
    if owner != str(os.getpid()) or not directory:
        return
    del os.environ[SPOOL]
    for path in sorted(Path(directory).glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            stats.merge(json.loads(path.read_text()))
    shutil.rmtree(directory, ignore_errors=True)


def _write_to_spool() -> None:
    import json
    from pathlib import Path

    owner, _, directory = os.environ.get(SPOOL, "").partition(":")
    if owner and owner != str(os.getpid()) and directory and stats.active:
        with contextlib.suppress(OSError):
            Path(directory, f"{os.getpid()}.json").write_text(
                json.dumps(stats.to_dict())
            )


def _as_worker() -> None:
    """In a worker (forked, or spawned with SPOOL set): start from nothing,
    report at exit. multiprocessing workers leave through os._exit, which
    skips atexit; its finalizers still run."""
    owner = os.environ.get(SPOOL, "").partition(":")[0]
    if not owner or owner == str(os.getpid()):
        return
    import multiprocessing.util

    # In place: other modules hold this object.
    vars(stats).update(vars(Stats()))
    multiprocessing.util.Finalize(None, _write_to_spool, exitpriority=50)


def _register() -> None:
    import multiprocessing.util

    # After multiprocessing's own clean-up in a new worker, which drops
    # finalizers registered any earlier (os.register_at_fork is too early).
    multiprocessing.util.register_after_fork(stats, lambda _: _as_worker())
    _as_worker()


_register()
