"""Warm worker processes, one per concurrent call, kept for the whole session.

Each process that makes concurrent calls (a test run, a pytest-xdist worker,
a Django ``--parallel`` worker) has its own pool. A worker is a fresh Python
interpreter (``_worker``) that sets Django up once, then runs one call per
batch.

A batch, over each worker's pipes:

1. the parent sends each worker its job: the function, its arguments, and
   the current settings of every database alias;
2. each worker re-points its connections if those settings changed, loads
   the function and arguments, connects, and answers "ready";
3. when all are ready, the parent sends "go" to each: the calls start
   together;
4. each worker sends back its result (or error) and closes its connections.

Every wait has a deadline. A worker still running a call when the timeout
runs out is killed; one that dies is reported with its exit status and the
end of its stderr, which goes to a file (nothing to drain, so nothing can
block) and is copied to this process's stderr after each batch.
"""

from __future__ import annotations

import atexit
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from testbed.concurrency._errors import CrashedProcessError, TerminatedProcessError
from testbed.concurrency._wire import Outcome
from testbed.concurrency._worker import Worker, describe_exit

# How long a worker may take to start (import and set Django up), and to
# get ready for a call (load it, connect): generous, for loaded machines.
STARTUP_TIMEOUT = 120.0
# How long shutting down waits for workers to leave on their own.
_EXIT_GRACE = 5.0
GO = pickle.dumps(("go",))


class Pool:
    """This process's workers."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.workers: list[Worker] = []
        self.settings_module: str | None = None
        self.directory: Path | None = None
        self.lock = threading.Lock()

    def run(
        self, jobs: list[bytes], *, settings_module: str, timeout: float
    ) -> list[Outcome]:
        """Run one batch: ``jobs[i]`` on worker ``i``, started together."""
        with self.lock:
            if settings_module != self.settings_module:
                self.shutdown()
                self.settings_module = settings_module
            self._grow(len(jobs), settings_module)
            workers = self.workers[: len(jobs)]
            try:
                return self._batch(workers, jobs, timeout)
            except BaseException:
                # Interrupted (Ctrl-C, a bug): these workers may be mid-call,
                # out of step with the protocol. Never reuse them.
                for worker in workers:
                    worker.kill()
                raise
            finally:
                for worker in workers:
                    worker.relay()
                dead = [w for w in workers if w.process.poll() is not None]
                for worker in dead:
                    self.workers.remove(worker)
                    worker.reap()
                    worker.close()

    def _batch(
        self, workers: list[Worker], jobs: list[bytes], timeout: float
    ) -> list[Outcome]:
        marks = [w.stderr_size() for w in workers]
        outcomes: list[Outcome | None] = [None] * len(workers)

        def crashed(i: int) -> None:
            worker = workers[i]
            code = worker.reap()
            outcomes[i] = Outcome.failed(
                CrashedProcessError(
                    f"The worker process running this call (pid {worker.pid}) "
                    f"{describe_exit(code)}. {worker.stderr_tail(marks[i])}",
                    returncode=code,
                    stderr=worker.stderr_since(marks[i]),
                ),
                pid=worker.pid,
            )

        def timed_out(i: int, what: str, seconds: float) -> None:
            worker = workers[i]
            worker.kill()
            outcomes[i] = Outcome.failed(
                TerminatedProcessError(
                    f"The call {what} {seconds:g}s, so its worker process "
                    f"(pid {worker.pid}) was killed. {worker.stderr_tail(marks[i])}",
                    timeout=seconds,
                    stderr=worker.stderr_since(marks[i]),
                ),
                pid=worker.pid,
            )

        def send(i: int, message: bytes) -> bool:
            try:
                workers[i].inbox.send_bytes(message)
            except OSError:
                crashed(i)
                return False
            return True

        ready: list[int] = []

        def on_ready(i: int, message: Any) -> None:
            ready.append(i)

        def on_result(i: int, message: Any) -> None:
            outcomes[i] = Outcome.from_result(message[1], pid=workers[i].pid)

        loading = [i for i in range(len(workers)) if send(i, jobs[i])]
        late = self._collect(
            workers, loading, STARTUP_TIMEOUT, "ready", on_ready, crashed
        )
        for i in late:
            timed_out(
                i,
                "was not ready to start (loading it, connecting) within",
                STARTUP_TIMEOUT,
            )
        # The start barrier: every call is loaded and connected; release all.
        started = [i for i in sorted(ready) if send(i, GO)]
        late = self._collect(workers, started, timeout, "result", on_result, crashed)
        for i in late:
            timed_out(i, "was still running after its timeout of", timeout)
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _collect(
        workers: list[Worker],
        indexes: list[int],
        seconds: float,
        kind: str,
        handle: Any,
        crashed: Any,
    ) -> list[int]:
        """Read one ``kind`` message from each of ``workers[indexes]`` within
        ``seconds``; the indexes still waiting at the deadline. A worker that
        dies, or says anything else, is killed and reported as crashed."""
        waiting = {workers[i].outbox: i for i in indexes}
        deadline = time.monotonic() + seconds
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for conn in wait(list(waiting), remaining):
                i = waiting.pop(conn)  # type: ignore[call-overload]
                try:
                    message = workers[i].receive()
                except (EOFError, OSError):
                    crashed(i)  # it is gone, or going
                    continue
                except pickle.UnpicklingError:
                    message = None
                if isinstance(message, tuple) and message and message[0] == kind:
                    handle(i, message)
                else:  # out of step: never trust it again
                    workers[i].kill()
                    crashed(i)
        return sorted(waiting.values())

    def _grow(self, size: int, settings_module: str) -> None:
        """Start workers until there are ``size`` live ones."""
        for worker in [w for w in self.workers if w.process.poll() is not None]:
            self.workers.remove(worker)
            worker.reap()
            worker.close()
        missing = size - len(self.workers)
        if missing <= 0:
            return
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="testbed-calls-"))
        from django.conf import settings

        # What the worker needs before it can import testbed and Django; and
        # DEBUG as the test run has it (test runners turn it off).
        hello = {"sys_path": list(sys.path), "debug": bool(settings.DEBUG)}
        new = [Worker(settings_module, self.directory, hello) for _ in range(missing)]
        failed: list[tuple[Worker, str]] = []

        def on_started(i: int, message: Any) -> None:
            self.workers.append(new[i])

        def on_crash(i: int) -> None:
            failed.append((new[i], describe_exit(new[i].reap())))

        late = self._collect(
            new, list(range(len(new))), STARTUP_TIMEOUT, "started", on_started, on_crash
        )
        for i in late:
            new[i].kill()
            failed.append(
                (new[i], f"did not finish starting within {STARTUP_TIMEOUT:g}s")
            )
        if failed:
            worker, what = failed[0]
            tail = worker.stderr_tail(0)
            for other, _ in failed:
                other.close()
            raise CrashedProcessError(
                f"A worker process for concurrent calls {what} while starting "
                f"(importing DJANGO_SETTINGS_MODULE={settings_module!r} and "
                f"running django.setup()). {tail}",
                returncode=worker.process.returncode,
                stderr=tail,
            )

    def shutdown(self) -> None:
        """End every worker: close its pipe, so it leaves; kill stragglers."""
        workers, self.workers = self.workers, []
        for worker in workers:
            try:
                worker.inbox.close()
            except OSError:
                pass
        deadline = time.monotonic() + _EXIT_GRACE
        for worker in workers:
            worker.reap(max(0.0, deadline - time.monotonic()))
            worker.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


_pool: Pool | None = None
_pool_lock = threading.Lock()
_exit_registered = False
# Pools a forked child inherited: not its own, never touched, kept from
# the garbage collector (whose Popen finalizer would warn about them).
_inherited: list[Pool] = []


def pool() -> Pool:
    """This process's pool, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = Pool()
            _at_exit_of_this_process()
        return _pool


def shutdown() -> None:
    """End this process's workers (at exit; or to measure a cold start)."""
    global _pool
    with _pool_lock:
        current, _pool = _pool, None
    if current is not None and current.pid == os.getpid():
        current.shutdown()


def _at_exit_of_this_process() -> None:
    # multiprocessing workers (Django's --parallel) leave through os._exit,
    # which skips atexit; their finalizers still run.
    global _exit_registered
    if not _exit_registered:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, shutdown, exitpriority=100)
        atexit.register(shutdown)
        _exit_registered = True


def _forget_after_fork() -> None:
    """In a forked child: the parent's workers are not ours. Close our copies
    of their pipes, so they still see the parent leave."""
    global _pool, _pool_lock, _exit_registered
    if _pool is not None:
        for worker in _pool.workers:
            for conn in (worker.inbox, worker.outbox):
                try:
                    conn.close()
                except OSError:
                    pass
        _inherited.append(_pool)
    _pool = None
    _pool_lock = threading.Lock()
    _exit_registered = False


os.register_at_fork(after_in_child=_forget_after_fork)
