"""Test runners that write every test's outcome to a JSON file.

``TEST_RUNNER = "compat.recording.RecordingRunner"`` (Django's
``DiscoverRunner``) or ``"compat.recording.RecordingTestbedRunner"``
(testbed's), with ``COMPAT_DJANGO_RESULTS`` naming the file. Without that
variable they behave exactly as their bases.

The outcomes are taken from the result object of the parent process: with
``--parallel`` Django replays each worker's events onto it
(``ParallelTestSuite.handle_event``), so one result class sees every test,
whichever process ran it. Everything else is the base runner's: only the
result class is wrapped, and the file is written when the run ends.

``RecordingTestbedRunner`` is made on first access, so that a vanilla run
never imports testbed (whose import registers fork hooks, and whose working
tree may be mid-edit).
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
import traceback
import unittest
from pathlib import Path
from typing import Any

import django
from django.test.runner import DiscoverRunner

RESULTS_ENV = "COMPAT_DJANGO_RESULTS"

# Worst last: when one test is reported more than once, the worst outcome
# stands. That happens with subtests (each failing one is reported, then the
# test itself), and with --parallel, where a worker's tearDownClass error is
# replayed onto the class's last test, after its success.
OUTCOMES = ("ok", "skip", "expected_failure", "unexpected_success", "fail", "error")
_RANK = {outcome: rank for rank, outcome in enumerate(OUTCOMES)}

# Enough of a message to tell two failures apart in a report; the full
# tracebacks are in the runtests log.
_DETAIL_LIMIT = 500


# unittest's name for a class- or module-level error: "setUpClass
# (module.Class)", "tearDownModule (module)".
_FIXTURE_ERROR = re.compile(r"^(\w+) \((.+)\)$")


def test_id(test: unittest.TestCase) -> str:
    """``module.Class.method`` for a test, its parent's for a subtest, and
    ``module.Class.setUpClass`` (or ``module.tearDownModule``...) for a
    class- or module-level error, so that no id has a space in it."""
    if isinstance(test, unittest.case._SubTest):  # type: ignore[attr-defined]
        test = test.test_case
    name = str(test.id())
    if isinstance(test, unittest.suite._ErrorHolder):  # type: ignore[attr-defined]
        match = _FIXTURE_ERROR.match(name)
        if match:
            return f"{match[2]}.{match[1]}"
    return name


def _summary(err: Any) -> str:
    """The last line of the exception: its type and message."""
    if not err or err[1] is None:
        return ""
    lines = traceback.format_exception_only(err[0], err[1])
    text = "".join(lines).strip()
    return text[:_DETAIL_LIMIT]


class _Recording:
    """The outcomes of one run, shared by the runner and its result."""

    def __init__(self, path: Path, runner: DiscoverRunner) -> None:
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {
            "django": django.get_version(),
            "python": platform.python_version(),
            "runner": f"{type(runner).__module__}.{type(runner).__qualname__}",
            "parallel": runner.parallel,
            "labels": [],
            "started": time.time(),
            "elapsed": None,
            "complete": False,
            "failures": None,
            "crash": None,
            "testbed": _testbed_location(),
        }

    def record(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        key = test_id(test)
        entry = self.tests.setdefault(key, {"outcome": outcome})
        if _RANK[outcome] > _RANK[entry["outcome"]]:
            entry["outcome"] = outcome
        details = entry.setdefault("details", []) if detail else []
        if detail and len(details) < 5:
            details.append(detail)

    def write(self) -> None:
        self.meta["elapsed"] = round(time.time() - self.meta["started"], 1)
        data = {**self.meta, "tests": dict(sorted(self.tests.items()))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a file.
        partial = self.path.with_suffix(self.path.suffix + ".partial")
        partial.write_text(json.dumps(data, indent=1) + "\n")
        partial.replace(self.path)


def _testbed_location() -> str | None:
    """Where testbed was imported from, if it was: proof of which copy ran."""
    module = sys.modules.get("testbed")
    return getattr(module, "__file__", None) if module else None


# The recording of the current run; the result class reaches it here, since
# unittest's runner makes the result object itself.
_current: _Recording | None = None


class _RecordingResultMixin(unittest.TestResult):
    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        _note(test, "ok")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        _note(test, "fail", _summary(err))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        _note(test, "error", _summary(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        _note(test, "skip", str(reason)[:_DETAIL_LIMIT])

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        _note(test, "expected_failure")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        _note(test, "unexpected_success")

    def addSubTest(
        self, test: unittest.TestCase, subtest: unittest.TestCase, err: Any
    ) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            # As unittest files it: a failed assertion fails, anything else errs.
            failed = issubclass(err[0], test.failureException)
            detail = f"{_subtest_label(subtest)}: {_summary(err)}"
            _note(test, "fail" if failed else "error", detail[:_DETAIL_LIMIT])


def _subtest_label(subtest: unittest.TestCase) -> str:
    """unittest's ``[message] (params)``, except that a subtest replayed
    from a --parallel worker has lost its no-message sentinel (it was
    pickled), which would show as ``[<object object at 0x...>]``."""
    message = getattr(subtest, "_message", None)
    params = getattr(subtest, "params", None) or {}
    parts = []
    if message is not None and type(message) is not object:
        parts.append(f"[{message}]")
    if params:
        parts.append("(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + ")")
    return " ".join(parts) or "(<subtest>)"


def _note(test: unittest.TestCase, outcome: str, detail: str = "") -> None:
    if _current is not None:
        _current.record(test, outcome, detail)


_result_classes: dict[type[unittest.TestResult], type[unittest.TestResult]] = {}


def _recording_result(base: type[unittest.TestResult]) -> type[unittest.TestResult]:
    """``base`` (the base runner's choice, e.g. for --debug-sql) with
    recording added."""
    if base not in _result_classes:
        _result_classes[base] = type(
            f"Recording{base.__name__}", (_RecordingResultMixin, base), {}
        )
    return _result_classes[base]


class _RecordingRunnerMixin(DiscoverRunner):
    def get_resultclass(self) -> Any:
        base = super().get_resultclass()
        if _current is None:
            return base
        # None means unittest's default, which the runner would pick itself.
        return _recording_result(base or unittest.TextTestResult)

    def run_tests(self, test_labels: list[str], *args: Any, **kwargs: Any) -> int:
        global _current
        path = os.environ.get(RESULTS_ENV)
        if not path:
            return int(super().run_tests(test_labels, *args, **kwargs))
        _current = recording = _Recording(Path(path), self)
        recording.meta["labels"] = list(test_labels or [])
        try:
            failures = int(super().run_tests(test_labels, *args, **kwargs))
            recording.meta.update(complete=True, failures=failures)
            return failures
        except BaseException as exc:
            # Set-up or teardown broke (a test database that could not be
            # made, say): the record says so instead of looking like a pass.
            recording.meta["crash"] = "".join(
                traceback.format_exception_only(type(exc), exc)
            ).strip()
            raise
        finally:
            # Which testbed ran is known only once the runner imported it.
            recording.meta["testbed"] = _testbed_location()
            recording.write()
            _current = None


class RecordingRunner(_RecordingRunnerMixin, DiscoverRunner):
    """Django's ``DiscoverRunner``, recording outcomes."""


def __getattr__(name: str) -> Any:
    if name == "RecordingTestbedRunner":
        from testbed.runner import TestbedRunner

        cls = type(
            "RecordingTestbedRunner",
            (_RecordingRunnerMixin, TestbedRunner),
            {
                "__module__": __name__,
                "__doc__": "testbed's ``TestbedRunner``, recording outcomes.",
            },
        )
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
