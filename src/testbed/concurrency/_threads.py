"""Thread mode: the calls race as threads of this process.

For code that must race inside one process (a cache, a module-level lock,
a connection pool). Django gives each thread its own connection to each
database; every thread connects before the start barrier and closes its
connections when its call ends. A thread cannot be killed: one still
running at the timeout is reported and left to finish on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from testbed.concurrency._errors import CallTimeoutError, format_error, type_name
from testbed.concurrency._pool import STARTUP_TIMEOUT
from testbed.concurrency._wire import Outcome, without_first_frame


def run(
    calls: list[tuple[Callable[..., Any], dict[str, Any]]],
    *,
    timeout: float,
    warm: list[str],
) -> list[Outcome]:
    size = len(calls)
    outcomes: list[Outcome | None] = [None] * size
    released = threading.Event()
    barrier = threading.Barrier(size, action=released.set)

    def target(i: int, function: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        from django.db import connections

        try:
            for alias in warm:
                try:
                    connections[alias].ensure_connection()
                except Exception:
                    pass  # the call meets the error itself, and reports it
            try:
                barrier.wait(STARTUP_TIMEOUT)
            except threading.BrokenBarrierError as exc:
                outcomes[i] = Outcome.failed(exc)
                return
            started = time.monotonic()
            try:
                value = function(**kwargs)
            except BaseException as exc:
                without_first_frame(exc)
                outcomes[i] = Outcome(
                    ok=False,
                    error=exc,
                    traceback=exc.__traceback__,
                    type_name=type_name(exc),
                    message=str(exc),
                    formatted=format_error(exc),
                    started=started,
                    finished=time.monotonic(),
                )
            else:
                outcomes[i] = Outcome(
                    ok=True, value=value, started=started, finished=time.monotonic()
                )
        finally:
            connections.close_all()

    threads = [
        threading.Thread(
            target=target, args=(i, *call), name=f"testbed-call-{i}", daemon=True
        )
        for i, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    released.wait(STARTUP_TIMEOUT)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for i, thread in enumerate(threads):
        if thread.is_alive():
            outcomes[i] = Outcome.failed(
                CallTimeoutError(
                    f"The call was still running after its timeout of {timeout:g}s. "
                    "A thread cannot be killed: it was left running, and closes "
                    "its connections when it ends.",
                    timeout=timeout,
                )
            )
    return [
        o
        if o is not None
        else Outcome.failed(RuntimeError("the thread ended without a result"))
        for o in outcomes
    ]
