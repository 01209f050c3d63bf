"""Pickling for the trip between processes: functions, arguments, results
and exceptions, with errors that say what could not be sent.

cloudpickle carries what plain pickle cannot (lambdas, local functions,
classes defined in a test); tblib carries tracebacks and chained causes.
Both parent and worker use this module.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType, ModuleType, TracebackType
from typing import Any

from testbed.concurrency._errors import (
    RemoteError,
    UnsendableError,
    format_error,
    type_name,
)

_MISSING = (
    "testbed's concurrent calls need cloudpickle and tblib, which are not "
    "installed. Install them with: pip install 'django-testbed[concurrency]'"
)


def cloudpickle() -> ModuleType:
    """The cloudpickle module, or an ImportError that says how to install it."""
    __tracebackhide__ = True
    try:
        import cloudpickle
        import tblib.pickling_support  # noqa: F401
    except ImportError as exc:
        raise ImportError(_MISSING, name=exc.name) from exc
    module: ModuleType = cloudpickle
    return module


def dumps(value: Any, *, what: str) -> bytes:
    """``value`` pickled; ``UnsendableError`` naming ``what`` if it cannot be."""
    __tracebackhide__ = True
    try:
        data: bytes = cloudpickle().dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except ImportError:
        raise
    except Exception as exc:
        raise UnsendableError(
            f"Cannot send {what} to another process: it cannot be pickled "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    return data


def loads(data: bytes) -> Any:
    return pickle.loads(data)


def import_function(path: str) -> Callable[..., Any]:
    """The function a ``"module.path:function"`` string names."""
    module_name, _, qualname = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise TypeError(f"{path!r} names a {type(found).__name__}, not a function.")
    result: Callable[..., Any] = found
    return result


def source_file(function: Any) -> str | None:
    """The file ``function`` was written in, if it is plain Python code."""
    code = getattr(function, "__code__", None)
    return code.co_filename if isinstance(code, CodeType) else None


def restore_source_file(function: Any, filename: str | None) -> None:
    """Give a function cloudpickle sent by value its file name back.

    cloudpickle names such code ``<dynamic-code>``; tracebacks (and
    debuggers) are more useful with the test file's name and lines.
    """
    code = getattr(function, "__code__", None)
    if filename and isinstance(code, CodeType) and code.co_filename == "<dynamic-code>":
        function.__code__ = _renamed(code, filename)


def _renamed(code: CodeType, filename: str) -> CodeType:
    consts = tuple(
        _renamed(c, filename) if isinstance(c, CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def without_first_frame(error: BaseException) -> BaseException:
    """``error`` with the frame that called the function (testbed's own)
    left out of its traceback."""
    tb = error.__traceback__
    if tb is not None and tb.tb_next is not None:
        error.__traceback__ = tb.tb_next
    return error


@dataclass
class Outcome:
    """How one call ended: its value, or its error with what describes it."""

    ok: bool
    value: Any = None
    error: BaseException | None = None
    traceback: TracebackType | None = None
    type_name: str = ""
    message: str = ""
    formatted: str = ""
    # time.monotonic() when the call began and ended (system-wide on Linux
    # and macOS, so comparable between processes).
    started: float | None = None
    finished: float | None = None
    pid: int | None = None

    @classmethod
    def failed(cls, error: BaseException, **times: Any) -> Outcome:
        """A call that ended with ``error`` raised here (a timeout, a crash)."""
        return cls(
            ok=False,
            error=error,
            traceback=error.__traceback__,
            type_name=type_name(error),
            message=_message(error),
            formatted=format_error(error) if error.__traceback__ else "",
            **times,
        )

    @classmethod
    def from_result(cls, result: dict[str, Any], *, pid: int) -> Outcome:
        """A call's outcome from the dict its worker process sent."""
        times = {
            "started": result["started"],
            "finished": result["finished"],
            "pid": pid,
        }
        if result["ok"]:
            try:
                return cls(ok=True, value=loads(result["value"]), **times)
            except Exception as exc:
                exc.add_note(
                    "(while rebuilding the call's return value in this process)"
                )
                return cls.failed(exc, **times)
        packed = result["error"]
        error, tb = unpack_exception(packed)
        return cls(
            ok=False,
            error=error,
            traceback=tb,
            type_name=packed["type_name"],
            message=packed["message"],
            formatted=packed["formatted"],
            **times,
        )


# --- exceptions ---------------------------------------------------------------


def pack_exception(error: BaseException) -> dict[str, Any]:
    """What the other side needs to rebuild ``error`` with its traceback."""
    import tblib
    import tblib.pickling_support

    packed: dict[str, Any] = {
        "type_name": type_name(error),
        "message": _message(error),
        "formatted": format_error(error),
        "blob": None,
        "traceback": None,
    }
    if error.__traceback__ is not None:
        packed["traceback"] = tblib.Traceback(error.__traceback__).to_dict()
    tblib.pickling_support.install(error)
    try:
        packed["blob"] = dumps(error, what="the exception")
    except Exception:
        # Try again without the chained exceptions, which are often what
        # cannot be pickled (a driver error holding a connection, say).
        saved = error.__cause__, error.__context__
        error.__cause__ = error.__context__ = None
        try:
            packed["blob"] = dumps(error, what="the exception")
        except Exception:
            pass  # rebuilt as a RemoteError from its name and message
        finally:
            error.__cause__, error.__context__ = saved
    return packed


def unpack_exception(
    packed: dict[str, Any],
) -> tuple[BaseException, TracebackType | None]:
    """The exception ``pack_exception`` packed, and its traceback."""
    import tblib

    error: BaseException | None = None
    if packed["blob"] is not None:
        try:
            error = loads(packed["blob"])
        except Exception:
            error = None  # its class cannot be rebuilt here
    if not isinstance(error, BaseException):
        error = RemoteError(packed["type_name"], packed["message"])
    tb = error.__traceback__
    if tb is None and packed["traceback"] is not None:
        tb = tblib.Traceback.from_dict(packed["traceback"]).as_traceback()
        error.__traceback__ = tb
    return error, tb


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception as exc:  # a broken __str__ must not hide the error
        return f"<str() failed: {type(exc).__name__}: {exc}>"
