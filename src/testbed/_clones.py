"""Working clones: each process's own copy of a template, and its restores.

Each process (a test run, an xdist worker, a ``--parallel`` worker) gets its
own clone of a template on first use, and brings it back to the template's
state when a test asks for that: by restoring the tables that changed where
the engine can, or by a fresh clone. Clones are dropped when the process
ends.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from testbed import _safety, _templates
from testbed._config import TemplateSpec
from testbed._engines import EngineError
from testbed._safety import CLONE, Mark
from testbed._stats import note, stats, timed

# Distinguishes this process's clones from those of concurrent test runs
# and of its own forked workers.
TOKEN = secrets.token_hex(3)
_lock = threading.RLock()
_finalizer_registered = False
# What forked children inherited: kept referenced, never closed, since
# closing a connection in a child would end the parent's session.
_inherited: list[Any] = []


@dataclass
class WorkingClone:
    template: _templates.Template
    name: str
    # None until a test first needs restores; then whether the engine tracks changes.
    tracking: bool | None = None
    users: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


_clones: dict[str, WorkingClone] = {}


def working_clone(spec: TemplateSpec) -> WorkingClone:
    """This process's clone of ``spec``'s template, made on first use."""
    with _lock, timed():
        clone = _clones.get(spec.name)
        if clone is not None:
            return clone
        built = _templates.template(spec)
        engine = built.engine
        name = engine.derive_name(
            _safety.clone_suffix(spec.name, TOKEN), persistent=False
        )
        clone = WorkingClone(built, name, settings=engine.settings_for(name))
        _at_exit_of_this_process()
        _clone_into(clone)
        _clones[spec.name] = clone
        return clone


# Test databases and clones of testbed's whose connections skip waiting for
# the disk (a setting of each connection on SQLite), by name. Kept across
# forks: --parallel workers connect to clones their parent made.
_quick: dict[str, Any] = {}


def skip_disk_waits(engine: Any, name: str) -> None:
    """Let commits to ``name``, a database testbed made for tests, return
    before the disk has them: no test needs a test database to survive a
    crash, and transactional tests commit all the time."""
    engine.skip_disk_waits(name)
    _quick[name] = engine


def _connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    engine = _quick.get(str(connection.settings_dict.get("NAME")))
    if engine is not None and engine.vendor == connection.vendor:
        engine.skip_disk_waits_on(connection)


def listen() -> None:
    """Tune the project's new connections to testbed's databases."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_connection_created, dispatch_uid=__name__)


def _clone_into(clone: WorkingClone) -> None:
    built = clone.template
    mark = Mark(
        name=clone.name,
        kind=CLONE,
        template=built.spec.name,
        fingerprint=built.fingerprint.digest,
        base=built.engine.base_name,
        complete=True,
    )
    clone.template = _templates.clone(built, clone.name, mark.dumps())
    skip_disk_waits(clone.template.engine, clone.name)
    stats.clones += 1


def prepare_restores(clone: WorkingClone) -> None:
    """Get ``clone`` ready to be restored after tests change it."""
    if clone.tracking is None:
        with timed():
            built = clone.template
            clone.tracking = built.engine.prepare_tracking(clone.name, built.name)
        if not clone.tracking and built.engine.vendor != "sqlite":
            # Each restore then costs a whole clone: say so, and why.
            note(
                f"{built.spec.label}: restores of its clone {clone.name} are "
                f"fresh clones, because change tracking is refused: "
                f"{built.engine.tracking_refused}"
            )


def restore(clone: WorkingClone) -> None:
    """Bring ``clone`` back to its template's state.

    The caller has closed its connections to the clone.
    """
    built = clone.template
    engine = built.engine
    with timed():
        if clone.tracking:
            try:
                if _safety.reset(engine, clone.name, built.name):
                    stats.restores_tracked += 1
                    return
            except EngineError:
                # MariaDB restores read the template: gone (replaced by
                # another run's --create-db), a fresh clone finds the new one.
                if engine.exists(built.name):
                    raise
        _safety.drop(engine, clone.name)
        _clone_into(clone)
        stats.clones -= 1  # counted as a restore, not a new clone
        stats.restores_fresh += 1
        if clone.tracking:
            current = clone.template
            clone.tracking = current.engine.prepare_tracking(clone.name, current.name)


def drop_working_clones() -> None:
    """Drop every working clone this process made."""
    with _lock:
        for clone in list(_clones.values()):
            try:
                _safety.drop(clone.template.engine, clone.name)
            except Exception as exc:  # at exit, report and go on
                note(f"could not drop {clone.name}: {exc}")
            finally:
                clone.template.engine.close()
        _clones.clear()
    _templates.close()


def _forget_parent() -> None:
    """In a forked child: the parent's clones are not ours."""
    global TOKEN, _lock, _finalizer_registered
    TOKEN = secrets.token_hex(3)
    _lock = threading.RLock()
    _finalizer_registered = False
    _inherited.extend(_clones.values())
    _clones.clear()


def _at_exit_of_this_process() -> None:
    # multiprocessing workers (Django's --parallel) leave through os._exit,
    # which skips atexit; their finalizers still run.
    global _finalizer_registered
    if not _finalizer_registered:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, drop_working_clones, exitpriority=100)
        _finalizer_registered = True


atexit.register(drop_working_clones)
os.register_at_fork(after_in_child=_forget_parent)
