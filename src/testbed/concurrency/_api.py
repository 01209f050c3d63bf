"""``call_concurrently`` and ``make_concurrent_calls``: django-concurrent-test-helper's API."""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from testbed.concurrency import _guard, _pool, _threads, _wire
from testbed.concurrency._errors import ConcurrencyError, WrappedError

Function = Callable[..., Any] | str
Call = tuple[Function, Mapping[str, Any]]

DEFAULT_TIMEOUT = 30.0
# django-concurrent-test-helper's setting, honoured as the default timeout.
TIMEOUT_ENV = "DJANGO_CONCURRENT_TESTS_TIMEOUT"
_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def call_concurrently(
    concurrency: int,
    function: Function,
    /,
    *,
    threads: bool = False,
    timeout: float | None = None,
    raise_errors: bool = False,
    databases: Collection[str] | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Call ``function(**kwargs)`` ``concurrency`` times at the same moment,
    each in its own process; the results in a list.

    ``function`` is a function (lambdas and local functions too) or a
    ``"module.path:function"`` string. A call that raises leaves a
    ``WrappedError`` in its slot. The options are the same as
    ``make_concurrent_calls``'s; to pass the function a keyword argument
    named like one of them, use ``make_concurrent_calls``.
    """
    __tracebackhide__ = True
    # Checked at run time too: callers need not be type-checked.
    valid = isinstance(concurrency, int) and not isinstance(concurrency, bool)  # type: ignore[redundant-expr]
    if not valid or concurrency < 1:
        raise ValueError(
            f"call_concurrently() needs a concurrency of 1 or more, not {concurrency!r}."
        )
    return _run(
        [(function, kwargs)] * concurrency,
        caller="call_concurrently()",
        threads=threads,
        timeout=timeout,
        raise_errors=raise_errors,
        databases=databases,
    )


def make_concurrent_calls(
    *calls: Call,
    threads: bool = False,
    timeout: float | None = None,
    raise_errors: bool = False,
    databases: Collection[str] | None = None,
) -> list[Any]:
    """Make each ``(function, kwargs)`` call at the same moment, each in its
    own process; their results in the order of the calls.

    - ``threads=True``: race threads of this process instead (each with its
      own database connections, closed afterwards).
    - ``timeout``: seconds each call may run (default 30, or
      ``DJANGO_CONCURRENT_TESTS_TIMEOUT``); a process still running then is
      killed, and its slot holds a ``TerminatedProcessError``.
    - ``raise_errors=True``: raise the first failed call's exception, with
      its traceback, instead of returning ``WrappedError`` objects.
    - ``databases``: the aliases the calls use (default: every one the
      calling test may use). The calls cannot reach the others.

    Raises ``UnsharedDatabaseError`` if the calls could not see the test's
    data, ``UnsendableError`` for what cannot be pickled, and
    ``CrashedProcessError`` if a worker process cannot start.
    """
    __tracebackhide__ = True
    return _run(
        list(calls),
        caller="make_concurrent_calls()",
        threads=threads,
        timeout=timeout,
        raise_errors=raise_errors,
        databases=databases,
    )


def _run(
    calls: Sequence[Any],
    *,
    caller: str,
    threads: bool,
    timeout: float | None,
    raise_errors: bool,
    databases: Collection[str] | None,
) -> list[Any]:
    __tracebackhide__ = True
    checked = [_check_call(i, call, caller=caller) for i, call in enumerate(calls)]
    if not checked:
        return []
    seconds = _timeout(timeout, caller=caller)
    found = _guard.databases(databases, caller=caller, threads=threads)
    if threads:
        resolved = [
            (_wire.import_function(f) if isinstance(f, str) else f, kw)
            for f, kw, _ in checked
        ]
        outcomes = _threads.run(resolved, timeout=seconds, warm=found.usable)
    else:
        outcomes = _processes(checked, found, timeout=seconds, caller=caller)
    results: list[Any] = []
    failures: list[WrappedError] = []
    for i, ((_, _, label), outcome) in enumerate(zip(checked, outcomes, strict=True)):
        if outcome.ok:
            results.append(outcome.value)
            continue
        assert outcome.error is not None
        wrapped = WrappedError(
            outcome.error,
            traceback=outcome.traceback,
            type_name=outcome.type_name,
            message=outcome.message,
            formatted_traceback=outcome.formatted,
            call=i,
            function=label,
        )
        results.append(wrapped)
        failures.append(wrapped)
    if raise_errors and failures:
        first = failures[0]
        others = len(failures) - 1
        first.error.add_note(
            f"Raised by call {first.call} of {len(checked)} ({first.function}) "
            f"in {caller}"
            + (f"; {others} other call(s) failed too." if others else ".")
        )
        first.reraise()
    return results


def _check_call(
    i: int, call: Any, *, caller: str
) -> tuple[Function, dict[str, Any], str]:
    """``call`` as (function, kwargs, label), or a TypeError saying what is wrong."""
    __tracebackhide__ = True
    if not isinstance(call, tuple | list) or len(call) != 2:
        raise TypeError(
            f"Call {i} of {caller} must be a (function, kwargs) pair, such as "
            f"(my_function, {{'amount': 1}}), not {call!r}."
        )
    function, kwargs = call
    if isinstance(function, str):
        if not _PATH.match(function):
            raise ValueError(
                f"Call {i} of {caller} names its function {function!r}; a "
                "function given by name is written 'module.path:function', "
                "with a colon before the function's name."
            )
        label = function
    elif callable(function):
        module = getattr(function, "__module__", None) or "?"
        label = f"{module}:{getattr(function, '__qualname__', repr(function))}"
    else:
        raise TypeError(
            f"Call {i} of {caller} must call a function or a "
            f"'module.path:function' string, not {type(function).__name__}."
        )
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(
            f"Call {i} of {caller} ({label}) needs its keyword arguments as a "
            f"dict of names to values, not {kwargs!r}."
        )
    return function, kwargs if isinstance(kwargs, dict) else dict(kwargs), label


def _timeout(value: float | None, *, caller: str) -> float:
    __tracebackhide__ = True
    where = f"timeout= of {caller}"
    if value is None:
        raw = os.environ.get(TIMEOUT_ENV)
        if raw is None:
            return DEFAULT_TIMEOUT
        where = f"the environment variable {TIMEOUT_ENV}"
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
    number = isinstance(value, int | float) and not isinstance(value, bool)  # type: ignore[redundant-expr]
    if not number or not value > 0:
        raise ValueError(
            f"{where} must be a positive number of seconds, not {value!r}."
        )
    return float(value)


def _processes(
    checked: list[tuple[Function, dict[str, Any], str]],
    found: _guard.Databases,
    *,
    timeout: float,
    caller: str,
) -> list[_wire.Outcome]:
    __tracebackhide__ = True
    _wire.cloudpickle()  # a clear ImportError if the extra is missing
    shared = {
        "settings": _dump_each(
            found.settings,
            lambda alias: (
                f"the settings of DATABASES[{alias!r}]"
                if alias
                else "the DATABASES settings"
            ),
        ),
        "forbidden": found.forbidden,
        "warm": found.usable,
        "env": dict(os.environ),
        "sys_path": list(sys.path),
        "cwd": os.getcwd(),
    }
    jobs: list[bytes] = []
    # call_concurrently repeats one (function, kwargs): pickle it once.
    cache: dict[tuple[int, int], tuple[bytes | str, bytes]] = {}
    for i, (function, kwargs, label) in enumerate(checked):
        key = (id(function), id(kwargs))
        if key not in cache:
            cache[key] = (
                function
                if isinstance(function, str)
                else _wire.dumps(function, what=f"the function of call {i} ({label})"),
                _dump_each(kwargs, _naming_arguments(i, label)),
            )
        spec, blob = cache[key]
        jobs.append(
            pickle.dumps(
                {
                    **shared,
                    "function": spec,
                    "source_file": _wire.source_file(function),
                    "kwargs": blob,
                }
            )
        )
    return _pool.pool().run(
        jobs, settings_module=_settings_module(caller), timeout=timeout
    )


def _naming_arguments(i: int, label: str) -> Callable[[str | None], str]:
    def describe(name: str | None) -> str:
        if name is None:
            return f"the arguments of call {i} ({label})"
        return f"argument {name!r} of call {i} ({label})"

    return describe


def _dump_each(values: dict[str, Any], describe: Callable[[str | None], str]) -> bytes:
    """``values`` pickled together (so objects they share stay shared); if
    that fails, the error names the one that cannot be sent."""
    __tracebackhide__ = True
    try:
        return _wire.dumps(values, what=describe(None))
    except ConcurrencyError:
        for key, value in values.items():
            _wire.dumps(value, what=describe(key))
        raise


def _settings_module(caller: str) -> str:
    __tracebackhide__ = True
    from django.conf import settings

    module = getattr(settings, "SETTINGS_MODULE", None)
    if not module:
        raise ConcurrencyError(
            f"{caller} runs each call in a new process, which loads Django's "
            "settings from DJANGO_SETTINGS_MODULE; these settings were made with "
            "settings.configure(), which another process cannot repeat. Put them "
            "in a settings module, or pass threads=True."
        )
    return str(module)
