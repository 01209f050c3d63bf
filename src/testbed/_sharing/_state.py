"""What every part of sharing needs: the lock, the shared aliases, errors."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from testbed._config import lock_timeout
from testbed._errors import TestbedError

if TYPE_CHECKING:
    from testbed._sharing._connection import Share


class SharingError(TestbedError):
    """A shared connection could not be used as asked; the message says why."""


class Lock:
    """The one re-entrant lock of every shared connection, knowing its holder.

    One for all of them: a request using two shared aliases and the test
    thread can never take two locks in different orders.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self.holder = ""

    def acquire(self) -> None:
        if not self._lock.acquire(blocking=False):
            timeout = lock_timeout()
            if not self._lock.acquire(timeout=timeout):
                raise SharingError(
                    f"testbed waited {timeout:g}s for a database connection this "
                    "test shares with every thread, but "
                    f"{self.holder or 'another thread'} still holds it. A request "
                    "or thread that never finishes, or that waits for this thread "
                    "inside an atomic block, keeps it; set TESTBED['LOCK_TIMEOUT'] "
                    "to wait longer."
                )
        if self._depth == 0:
            self.holder = describe_current()
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.holder = ""
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


LOCK = Lock()

# Alias -> its share, while shared. Changed only under LOCK.
shares: dict[str, Share] = {}

# Per thread: .unit, the live-server request it is serving (_threads.Unit).
local = threading.local()


def describe_current() -> str:
    """The current thread, for messages: its request if it serves one."""
    name = threading.current_thread().name
    unit = getattr(local, "unit", None)
    if unit is not None:
        return f"{unit.label} (thread {name!r})"
    return f"thread {name!r}"
