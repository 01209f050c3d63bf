"""One worker process: how it is started, spoken to, watched and ended.

A fresh interpreter (``python -c``, never a fork: a forked child would
share the parent's database sockets) whose stdin and stdout are the two
pipes of the protocol, and whose stderr goes to a file: nothing to drain,
so nothing can block, and what it says survives a crash to be reported.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_TAIL = 4000

# The worker's first lines, before testbed itself can be imported: the
# parent's sys.path comes over the pipe, never on the command line.
_BOOT = """\
import os, pickle, sys
from multiprocessing.connection import Connection
inbox = Connection(os.dup(0), writable=False)
hello = pickle.loads(inbox.recv_bytes())
sys.path[:] = hello["sys_path"]
from testbed.concurrency._child import main
main(inbox, hello)
"""
_numbers = itertools.count(1)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name} (exit code {returncode})"
    return f"exited with code {returncode}"


class Worker:
    """One worker process, its two pipes, and the file its stderr goes to."""

    def __init__(
        self, settings_module: str, directory: Path, hello: dict[str, Any]
    ) -> None:
        self.stderr_path = directory / f"worker-{next(_numbers)}.stderr"
        self.relayed = 0
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module}
        command = [
            sys.executable,
            # -B, -E, -I, -W options...: what multiprocessing's spawn passes.
            *subprocess._args_from_interpreter_flags(),  # type: ignore[attr-defined]
            "-c",
            _BOOT,
        ]
        child_in, self_out = os.pipe()
        self_in, child_out = os.pipe()
        try:
            with open(self.stderr_path, "wb") as stderr:
                self.process = subprocess.Popen(
                    command, stdin=child_in, stdout=child_out, stderr=stderr, env=env
                )
        except BaseException:
            os.close(self_out)
            os.close(self_in)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        self.inbox = Connection(self_out, readable=False)
        self.outbox = Connection(self_in, writable=False)
        try:
            self.inbox.send_bytes(pickle.dumps(hello))
        except OSError:
            pass  # it died at once: the handshake reports it

    @property
    def pid(self) -> int:
        return self.process.pid

    def receive(self) -> Any:
        """The next message; EOFError or OSError if the worker died."""
        return pickle.loads(self.outbox.recv_bytes())

    def stderr_size(self) -> int:
        try:
            return self.stderr_path.stat().st_size
        except OSError:
            return 0

    def _read_from(self, offset: int) -> bytes:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return b""

    def stderr_since(self, offset: int) -> str:
        return self._read_from(offset).decode("utf-8", "replace")

    def stderr_tail(self, offset: int) -> str:
        text = self.stderr_since(offset)
        if len(text) > _TAIL:
            text = "…" + text[-_TAIL:]
        if not text.strip():
            return "It wrote nothing to stderr."
        return "Its stderr ends with:\n" + text.rstrip("\n")

    def relay(self) -> None:
        """Copy what the worker wrote to stderr since the last relay to ours,
        where the test runner captures it with the test's output."""
        data = self._read_from(self.relayed)
        if data:
            self.relayed += len(data)
            sys.stderr.write(data.decode("utf-8", "replace"))
            sys.stderr.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.reap()

    def reap(self, grace: float = 5.0) -> int | None:
        """Wait for the worker to end (killing it after ``grace`` seconds)."""
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def close(self) -> None:
        """Let go of the pipes and the stderr file (the process is gone)."""
        for conn in (self.inbox, self.outbox):
            try:
                conn.close()
            except OSError:
                pass
        try:
            self.stderr_path.unlink()
        except OSError:
            pass
