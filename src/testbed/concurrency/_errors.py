"""What a concurrent call can come back with, and the errors about running them.

``WrappedError`` and ``TerminatedProcessError`` keep the names and the
attributes django-concurrent-test-helper documented, so its users find them.
"""

from __future__ import annotations

import sys
import traceback as traceback_module
from types import TracebackType
from typing import IO, Any, NoReturn

from testbed._errors import TestbedError


class ConcurrencyError(TestbedError):
    """Running concurrent calls went wrong; the message says what to do."""


class UnsharedDatabaseError(ConcurrencyError):
    """The calls could not see the test's data: it is not committed, or the
    database lives in this process's memory."""


class UnsendableError(ConcurrencyError, TypeError):
    """A function or argument cannot be pickled, so it cannot reach another
    process. The message names it."""


class CallTimeoutError(ConcurrencyError):
    """A call was still running when its timeout ran out."""

    def __init__(self, message: str, *, timeout: float, stderr: str = "") -> None:
        super().__init__(message)
        self.timeout = timeout
        self.stderr = stderr

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), self.args, self.__dict__)


class TerminatedProcessError(CallTimeoutError):
    """A call ran past its timeout, so its process was killed
    (django-concurrent-test-helper's name). ``stderr`` holds what the process
    wrote to its standard error during the call."""


class CrashedProcessError(ConcurrencyError):
    """A worker process died: ``returncode`` is its exit status (negative: the
    signal that killed it), ``stderr`` the end of what it wrote there."""

    def __init__(self, message: str, *, returncode: int | None, stderr: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), self.args, self.__dict__)


class RemoteError(ConcurrencyError):
    """Stands in for an exception that could not be rebuilt in this process
    (its class cannot be pickled or imported here): ``type_name`` and the
    message are the original's."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message

    def __reduce__(self) -> Any:
        return type(self), (self.type_name, self.message)


def _rebuild(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> Any:
    error = Exception.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def type_name(error: BaseException) -> str:
    """``module.QualName`` of ``error``'s class (plain name for builtins)."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class WrappedError(Exception):
    """A call that raised, in its slot of the results.

    - ``error``: the exception, rebuilt in this process (its chained causes
      too), or a ``ConcurrencyError`` for a call that timed out or whose
      process crashed;
    - ``traceback``: the traceback from where it was raised, in the other
      process (``None`` for timeouts and crashes);
    - ``type_name`` and ``message``: the exception's class and text there;
    - ``formatted_traceback``: the whole report as Python printed it there;
    - ``call``: the call's index; ``function``: what it called.

    ``reraise()`` raises ``error`` with that traceback, ``print_tb()`` prints
    it, ``debug()`` opens a post-mortem debugger on it.
    """

    def __init__(
        self,
        error: BaseException,
        *,
        traceback: TracebackType | None = None,
        type_name: str | None = None,
        message: str | None = None,
        formatted_traceback: str = "",
        call: int = 0,
        function: str = "",
    ) -> None:
        self.error = error
        self.traceback = traceback
        self.type_name = type_name or _type_name(error)
        self.message = str(error) if message is None else message
        self.formatted_traceback = formatted_traceback
        self.call = call
        self.function = function
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.type_name}: {self.message}" if self.message else self.type_name
        return f"call {self.call} ({self.function}) raised {text}"

    def __repr__(self) -> str:
        return f"<WrappedError {self._describe()}>"

    def __reduce__(self) -> Any:
        # The traceback object itself does not pickle (the error keeps its
        # own where tblib is installed); everything else travels.
        return _rebuild_wrapped, (
            self.error,
            self.type_name,
            self.message,
            self.formatted_traceback,
            self.call,
            self.function,
        )

    def reraise(self) -> NoReturn:
        """Raise the original exception, with its traceback from the call."""
        __tracebackhide__ = True
        raise self.error.with_traceback(self.traceback)

    def print_tb(self, file: IO[str] | None = None) -> None:
        """Print the call's traceback (all of it, as raised there)."""
        out = sys.stderr if file is None else file
        if self.formatted_traceback:
            out.write(self.formatted_traceback)
        else:
            out.write(f"{self.type_name}: {self.message}\n")

    def debug(self) -> None:
        """Post-mortem debugging of the call's traceback (ipdb if installed)."""
        try:
            import ipdb  # type: ignore[import-not-found]

            ipdb.post_mortem(self.traceback)
        except ImportError:
            import pdb

            pdb.post_mortem(self.traceback)


_type_name = type_name


def _rebuild_wrapped(
    error: BaseException,
    type_name: str,
    message: str,
    formatted_traceback: str,
    call: int,
    function: str,
) -> WrappedError:
    return WrappedError(
        error,
        traceback=error.__traceback__,
        type_name=type_name,
        message=message,
        formatted_traceback=formatted_traceback,
        call=call,
        function=function,
    )


def format_error(error: BaseException) -> str:
    return "".join(traceback_module.format_exception(error))
