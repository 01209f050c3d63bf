"""Concurrent calls: real races on each engine, errors, timeouts, crashes,
the guard rails, thread mode, and the two parallel runners end to end.

The functions the calls run are defined at module level, so worker
processes import them from here. Races are made certain, not likely, by a
rendezvous in files: each call waits until all have reached the same point.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import unittest
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction
from django.test import TestCase, TransactionTestCase

from testbed import _switch
from testbed.concurrency import (
    CallTimeoutError,
    ConcurrencyError,
    CrashedProcessError,
    RemoteError,
    TerminatedProcessError,
    UnsendableError,
    UnsharedDatabaseError,
    WrappedError,
    call_concurrently,
    make_concurrent_calls,
)
from tests.conftest import ALIAS, unique_db_name
from tests.races.models import Counter, Ticket
from tests.utils import Project

# --- what the calls run -------------------------------------------------------


def _arrive(rendezvous: str, phase: str, calls: int) -> None:
    """Wait until ``calls`` calls have arrived at ``phase``."""
    directory = Path(rendezvous) / phase
    directory.mkdir(exist_ok=True)
    (directory / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(directory)) < calls:
        if time.monotonic() > deadline:
            raise AssertionError(f"only some of {calls} calls reached {phase!r}")
        time.sleep(0.002)


def echo(value: Any) -> Any:
    return value


def process_id() -> int:
    return os.getpid()


def database_name(alias: str) -> str:
    return str(connections[alias].settings_dict["NAME"])


def environment(name: str) -> str | None:
    return os.environ.get(name)


def count_counters(alias: str) -> int:
    return Counter.objects.using(alias).count()


def increment_unlocked(alias: str, pk: int, rendezvous: str, calls: int) -> int:
    """Read, wait until every call has read, write: the classic lost update."""
    value = Counter.objects.using(alias).get(pk=pk).value
    _arrive(rendezvous, "read", calls)
    Counter.objects.using(alias).filter(pk=pk).update(value=value + 1)
    return value + 1


def increment_locked(alias: str, pk: int, rendezvous: str, calls: int) -> int:
    """The same under a row lock (SQLite: an IMMEDIATE transaction). The
    holder waits until every call is trying to take the lock."""
    _arrive(rendezvous, "locking", calls)
    with transaction.atomic(using=alias):
        counter = Counter.objects.using(alias).select_for_update().get(pk=pk)
        _arrive(rendezvous, "locking", calls)
        counter.value += 1
        counter.save(using=alias)
    return counter.value


def claim(alias: str, code: str, rendezvous: str, calls: int) -> str:
    _arrive(rendezvous, "claim", calls)
    Ticket.objects.using(alias).create(code=code)
    return "won"


def _fail_here() -> None:
    raise ValueError("deep failure")


def fail_deep() -> None:
    _fail_here()


def sleep_long(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def interrupt_caller(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    os.kill(os.getppid(), signal.SIGUSR1)
    time.sleep(600)


def crash(code: int) -> None:
    sys.stderr.write("about to crash\n")
    sys.stderr.flush()
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def chatty() -> int:
    print("hello from a call")
    return 1


def return_a_lock() -> Any:
    return threading.Lock()


class HoldsALock(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_holding_a_lock() -> None:
    raise HoldsALock("cannot travel")


class NeedsTwoArguments(Exception):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


def raise_needing_two_arguments() -> None:
    try:
        raise KeyError("the cause")
    except KeyError as exc:
        raise NeedsTwoArguments("one", "two") from exc


def remember_connection(alias: str, seen: list[Any]) -> None:
    conn = connections[alias]
    conn.ensure_connection()
    seen.append(conn)


def wait_for(event: threading.Event) -> None:
    event.wait(600)


# --- fixtures --------------------------------------------------------------------


@pytest.fixture
def race_db(vendor: str, test_settings: dict[str, Any], engine: Any) -> Iterator[str]:
    """``vendor``'s alias pointed (as testbed points a template clone) at a
    new database holding the race tables; yields the alias."""
    alias = ALIAS[vendor]
    settings = dict(test_settings)
    if vendor == "sqlite":
        # SQLite's row lock: IMMEDIATE transactions take the write lock at
        # BEGIN; the busy timeout lets the others wait for it.
        settings["OPTIONS"] = {
            **settings.get("OPTIONS", {}),
            "transaction_mode": "IMMEDIATE",
            "timeout": 60,
        }
    engine.create_empty(settings["NAME"], "{}")
    with _switch.pointing(alias, settings):
        with connections[alias].schema_editor() as editor:
            editor.create_model(Counter)
            editor.create_model(Ticket)
        yield alias
        connections[alias].close()


@pytest.fixture
def rendezvous(tmp_path: Path) -> str:
    """A directory the calls meet in."""
    path = tmp_path / "rendezvous"
    path.mkdir()
    return str(path)


def errors(results: list[Any]) -> list[WrappedError]:
    return [r for r in results if isinstance(r, WrappedError)]


# --- races, on each engine ---------------------------------------------------------


@pytest.mark.parametrize("threads", [False, True], ids=["processes", "threads"])
def test_unlocked_increments_lose_updates(
    race_db: str, rendezvous: str, threads: bool
) -> None:
    counter = Counter.objects.using(race_db).create(value=0)
    results = call_concurrently(
        4,
        increment_unlocked,
        alias=race_db,
        pk=counter.pk,
        rendezvous=rendezvous,
        calls=4,
        threads=threads,
        databases=[race_db],
    )
    assert results == [1, 1, 1, 1]
    counter.refresh_from_db(using=race_db)
    assert counter.value == 1


@pytest.mark.parametrize("threads", [False, True], ids=["processes", "threads"])
def test_locked_increments_lose_nothing(
    race_db: str, rendezvous: str, threads: bool
) -> None:
    counter = Counter.objects.using(race_db).create(value=0)
    results = call_concurrently(
        4,
        increment_locked,
        alias=race_db,
        pk=counter.pk,
        rendezvous=rendezvous,
        calls=4,
        threads=threads,
        databases=[race_db],
    )
    assert sorted(results) == [1, 2, 3, 4]
    counter.refresh_from_db(using=race_db)
    assert counter.value == 4


def test_unique_constraint_lets_one_insert_win(race_db: str, rendezvous: str) -> None:
    results = call_concurrently(
        4,
        claim,
        alias=race_db,
        code="A1",
        rendezvous=rendezvous,
        calls=4,
        databases=[race_db],
    )
    assert results.count("won") == 1
    lost = errors(results)
    assert len(lost) == 3
    assert all(isinstance(e.error, IntegrityError) for e in lost), lost
    assert Ticket.objects.using(race_db).filter(code="A1").count() == 1


def test_calls_see_committed_data_on_the_pointed_database(race_db: str) -> None:
    Counter.objects.using(race_db).create(value=5)
    name = connections[race_db].settings_dict["NAME"]
    # The name is the one this process points at, not one a worker could
    # derive from DATABASES.
    assert (
        call_concurrently(3, database_name, alias=race_db, databases=[race_db])
        == [name] * 3
    )
    assert (
        call_concurrently(3, count_counters, alias=race_db, databases=[race_db])
        == [1] * 3
    )


def test_own_atomic_block_is_allowed_and_invisible(race_db: str) -> None:
    with transaction.atomic(using=race_db):
        Counter.objects.using(race_db).create(value=1)
        seen = call_concurrently(2, count_counters, alias=race_db, databases=[race_db])
    assert seen == [0, 0]


# --- warm workers --------------------------------------------------------------------


def test_workers_stay_warm_and_follow_repointing(
    race_db: str,
    vendor: str,
    tmp_path: Path,
    engine: Any,
    test_settings: dict[str, Any],
) -> None:
    first = call_concurrently(2, process_id, databases=[race_db])
    assert call_concurrently(2, process_id, databases=[race_db]) == first
    other = dict(connections[race_db].settings_dict)
    other["NAME"] = (
        str(tmp_path / "other.sqlite3") if vendor == "sqlite" else unique_db_name()
    )
    other_engine = type(engine)(other, race_db)
    other_engine.create_empty(other["NAME"], "{}")
    try:
        with _switch.pointing(race_db, other):
            names = call_concurrently(
                2, database_name, alias=race_db, databases=[race_db]
            )
            assert names == [other["NAME"]] * 2
            assert call_concurrently(2, process_id, databases=[race_db]) == first
        names = call_concurrently(2, database_name, alias=race_db, databases=[race_db])
        assert names == [test_settings["NAME"]] * 2
    finally:
        connections[race_db].close()
        other_engine.close()
        other_engine._drop(other["NAME"])
        other_engine.close()


def test_workers_take_on_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBED_PROBE", "first")
    assert call_concurrently(2, environment, name="TESTBED_PROBE", databases=[]) == [
        "first",
        "first",
    ]
    monkeypatch.setenv("TESTBED_PROBE", "second")
    assert call_concurrently(2, environment, name="TESTBED_PROBE", databases=[]) == [
        "second",
        "second",
    ]


# --- the API -------------------------------------------------------------------------


def test_results_come_back_in_call_order() -> None:
    calls = [(echo, {"value": i}) for i in range(4)]
    assert make_concurrent_calls(*calls, databases=[]) == [0, 1, 2, 3]


def test_functions_by_name_lambdas_and_local_functions() -> None:
    offset = 40

    def local(value: int) -> int:
        return value + offset

    results = make_concurrent_calls(
        ("tests.test_concurrency:echo", {"value": "by name"}),
        (lambda: offset + 2, {}),
        (local, {"value": 3}),
        databases=[],
    )
    assert results == ["by name", 42, 43]


def test_no_calls() -> None:
    assert make_concurrent_calls() == []


def test_output_of_calls_reaches_this_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert call_concurrently(1, chatty, databases=[]) == [1]
    assert "hello from a call" in capsys.readouterr().err


# --- errors --------------------------------------------------------------------------


def test_exception_comes_back_with_its_traceback() -> None:
    results = make_concurrent_calls((echo, {"value": 1}), (fail_deep, {}), databases=[])
    assert results[0] == 1
    wrapped = results[1]
    assert isinstance(wrapped, WrappedError)
    assert isinstance(wrapped.error, ValueError)
    assert wrapped.type_name == "ValueError"
    assert wrapped.message == "deep failure"
    assert (wrapped.call, wrapped.function) == (1, "tests.test_concurrency:fail_deep")
    assert str(wrapped) == (
        "call 1 (tests.test_concurrency:fail_deep) raised ValueError: deep failure"
    )
    frames = traceback.extract_tb(wrapped.traceback)
    assert [f.name for f in frames] == ["fail_deep", "_fail_here"]
    assert frames[-1].filename == __file__
    assert 'raise ValueError("deep failure")' in wrapped.formatted_traceback
    assert wrapped.formatted_traceback.endswith("ValueError: deep failure\n")
    with pytest.raises(ValueError, match="deep failure") as excinfo:
        wrapped.reraise()
    assert "_fail_here" in [f.name for f in traceback.extract_tb(excinfo.tb)]


def test_wrapped_error_pickles() -> None:
    import pickle

    [wrapped] = call_concurrently(1, fail_deep, databases=[])
    copy = pickle.loads(pickle.dumps(wrapped))
    assert isinstance(copy.error, ValueError)
    assert (copy.type_name, copy.message, copy.call, copy.function) == (
        "ValueError",
        "deep failure",
        0,
        "tests.test_concurrency:fail_deep",
    )
    assert copy.formatted_traceback == wrapped.formatted_traceback


def test_lambda_tracebacks_name_this_file() -> None:
    [wrapped] = call_concurrently(1, lambda: 1 / 0, databases=[])
    assert isinstance(wrapped.error, ZeroDivisionError)
    assert traceback.extract_tb(wrapped.traceback)[-1].filename == __file__


def test_raise_errors_raises_the_first_failure() -> None:
    with pytest.raises(ValueError, match="deep failure") as excinfo:
        make_concurrent_calls(
            (echo, {"value": 1}),
            (fail_deep, {}),
            (fail_deep, {}),
            raise_errors=True,
            databases=[],
        )
    assert excinfo.value.__notes__ == [
        "Raised by call 1 of 3 (tests.test_concurrency:fail_deep) in "
        "make_concurrent_calls(); 1 other call(s) failed too."
    ]


def test_chained_exception_with_a_custom_init() -> None:
    [wrapped] = call_concurrently(1, raise_needing_two_arguments, databases=[])
    assert isinstance(wrapped.error, NeedsTwoArguments)
    assert str(wrapped.error) == "one and two"
    assert isinstance(wrapped.error.__cause__, KeyError)


def test_exception_that_cannot_be_pickled_comes_back_by_name() -> None:
    [wrapped] = call_concurrently(1, raise_holding_a_lock, databases=[])
    assert isinstance(wrapped.error, RemoteError)
    assert wrapped.type_name == "tests.test_concurrency.HoldsALock"
    assert wrapped.message == "cannot travel"
    assert str(wrapped.error) == "tests.test_concurrency.HoldsALock: cannot travel"
    assert [f.name for f in traceback.extract_tb(wrapped.traceback)] == [
        "raise_holding_a_lock"
    ]
    with pytest.raises(RemoteError):
        wrapped.reraise()


def test_return_value_that_cannot_be_pickled() -> None:
    [wrapped] = call_concurrently(1, return_a_lock, databases=[])
    assert isinstance(wrapped.error, UnsendableError)
    assert wrapped.message.startswith(
        "Cannot send the call's return value (lock) to another process: it "
        "cannot be pickled (TypeError: cannot pickle '_thread.lock' object)."
    )


def test_argument_that_cannot_be_sent_is_named() -> None:
    with pytest.raises(UnsendableError) as excinfo:
        call_concurrently(2, echo, value=threading.Lock(), databases=[])
    assert str(excinfo.value) == (
        "Cannot send argument 'value' of call 0 (tests.test_concurrency:echo) to "
        "another process: it cannot be pickled (TypeError: cannot pickle "
        "'_thread.lock' object)."
    )


def test_function_that_cannot_be_sent_is_named() -> None:
    lock = threading.Lock()
    with pytest.raises(UnsendableError) as excinfo:
        call_concurrently(1, lambda: lock.locked(), databases=[])
    assert str(excinfo.value).startswith(
        "Cannot send the function of call 0 (tests.test_concurrency:"
        "test_function_that_cannot_be_sent_is_named.<locals>.<lambda>) to another "
        "process: it cannot be pickled"
    )


def test_function_that_cannot_be_imported_there() -> None:
    [wrapped] = call_concurrently(1, "tests.no_such_module:f", databases=[])
    assert isinstance(wrapped.error, ModuleNotFoundError)
    assert wrapped.error.__notes__ == ["(while loading the call in its worker process)"]


def test_timeout_kills_the_call(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    results = make_concurrent_calls(
        (echo, {"value": 7}),
        (sleep_long, {"pid_file": str(pid_file)}),
        timeout=1,
        databases=[],
    )
    assert results[0] == 7
    wrapped = results[1]
    assert isinstance(wrapped.error, TerminatedProcessError)
    assert isinstance(wrapped.error, CallTimeoutError)
    pid = int(pid_file.read_text())
    assert str(wrapped.error) == (
        "The call was still running after its timeout of 1s, so its worker "
        f"process (pid {pid}) was killed. It wrote nothing to stderr."
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # The pool replaces the killed worker.
    assert call_concurrently(2, echo, value=8, databases=[]) == [8, 8]


@pytest.mark.parametrize(
    ("function", "kwargs", "exit_text", "code", "stderr"),
    [
        (crash, {"code": 3}, "exited with code 3", 3, "about to crash\n"),
        (kill_self, {}, "was killed by SIGKILL (exit code -9)", -9, ""),
    ],
    ids=["exit", "signal"],
)
def test_crashing_child_is_reported(
    function: Any, kwargs: dict[str, Any], exit_text: str, code: int, stderr: str
) -> None:
    results = make_concurrent_calls(
        (function, kwargs), (echo, {"value": 1}), databases=[]
    )
    assert results[1] == 1
    error = results[0].error
    assert isinstance(error, CrashedProcessError)
    assert (error.returncode, error.stderr) == (code, stderr)
    tail = (
        "Its stderr ends with:\nabout to crash"
        if stderr
        else "It wrote nothing to stderr."
    )
    assert re.fullmatch(
        rf"The worker process running this call \(pid \d+\) {re.escape(exit_text)}\. "
        + re.escape(tail),
        str(error),
    ), str(error)
    assert call_concurrently(2, echo, value=2, databases=[]) == [2, 2]


def test_interrupted_batch_leaves_no_worker_behind(tmp_path: Path) -> None:
    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    pid_file = tmp_path / "pid"
    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with pytest.raises(Interrupted):
            call_concurrently(1, interrupt_caller, pid_file=str(pid_file), databases=[])
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # The worker was mid-call: killed, never reused.
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert call_concurrently(1, echo, value=3, databases=[]) == [3]


def test_worker_that_cannot_start_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    monkeypatch.setattr(settings, "SETTINGS_MODULE", "tests.no_such_settings")
    with pytest.raises(CrashedProcessError) as excinfo:
        call_concurrently(1, echo, value=1, databases=[])
    message = str(excinfo.value)
    assert message.startswith(
        "A worker process for concurrent calls exited with code 1 while starting "
        "(importing DJANGO_SETTINGS_MODULE='tests.no_such_settings' and running "
        "django.setup()). Its stderr ends with:\n"
    )
    assert "No module named 'tests.no_such_settings'" in message
    assert excinfo.value.returncode == 1


def test_settings_made_in_code_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.conf import settings

    monkeypatch.setattr(settings, "SETTINGS_MODULE", None)
    with pytest.raises(ConcurrencyError) as excinfo:
        call_concurrently(1, echo, value=1, databases=[])
    assert str(excinfo.value) == (
        "call_concurrently() runs each call in a new process, which loads "
        "Django's settings from DJANGO_SETTINGS_MODULE; these settings were "
        "made with settings.configure(), which another process cannot repeat. "
        "Put them in a settings module, or pass threads=True."
    )


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cloudpickle", None)
    with pytest.raises(ImportError) as excinfo:
        call_concurrently(1, echo, value=1, databases=[])
    assert str(excinfo.value) == (
        "testbed's concurrent calls need cloudpickle and tblib, which are not "
        "installed. Install them with: pip install 'django-testbed[concurrency]'"
    )
    # Threads need neither.
    assert call_concurrently(1, echo, value=1, threads=True, databases=[]) == [1]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: call_concurrently(0, echo),
            ValueError,
            "call_concurrently() needs a concurrency of 1 or more, not 0.",
        ),
        (
            lambda: make_concurrent_calls(echo),  # type: ignore[arg-type]
            TypeError,
            "Call 0 of make_concurrent_calls() must be a (function, kwargs) pair, "
            "such as (my_function, {'amount': 1}), not",
        ),
        (
            lambda: make_concurrent_calls(("tests.test_concurrency.echo", {})),
            ValueError,
            "Call 0 of make_concurrent_calls() names its function "
            "'tests.test_concurrency.echo'; a function given by name is written "
            "'module.path:function', with a colon before the function's name.",
        ),
        (
            lambda: make_concurrent_calls((42, {})),  # type: ignore[arg-type]
            TypeError,
            "Call 0 of make_concurrent_calls() must call a function or a "
            "'module.path:function' string, not int.",
        ),
        (
            lambda: make_concurrent_calls((echo, [1])),  # type: ignore[arg-type]
            TypeError,
            "Call 0 of make_concurrent_calls() (tests.test_concurrency:echo) needs "
            "its keyword arguments as a dict of names to values, not [1].",
        ),
        (
            lambda: call_concurrently(1, echo, value=1, timeout=0),
            ValueError,
            "timeout= of call_concurrently() must be a positive number of seconds, not 0.",
        ),
        (
            lambda: call_concurrently(1, echo, value=1, databases="default"),
            TypeError,
            "databases= of call_concurrently() must be a collection of DATABASES "
            "aliases, such as ['default'], not 'default'.",
        ),
        (
            lambda: call_concurrently(1, echo, value=1, databases=["nope"]),
            ValueError,
            "databases= of call_concurrently() names 'nope', not in DATABASES "
            "(aliases: 'default', 'postgresql', 'mysql').",
        ),
    ],
    ids=[
        "concurrency",
        "not-a-pair",
        "path-without-colon",
        "not-callable",
        "kwargs-not-a-dict",
        "timeout",
        "databases-a-string",
        "databases-unknown",
    ],
)
def test_bad_input_is_named(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as excinfo:
        call()
    assert str(excinfo.value).startswith(message), str(excinfo.value)


def test_seed_timeout_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_CONCURRENT_TESTS_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="DJANGO_CONCURRENT_TESTS_TIMEOUT") as excinfo:
        call_concurrently(1, echo, value=1, databases=[])
    assert str(excinfo.value) == (
        "the environment variable DJANGO_CONCURRENT_TESTS_TIMEOUT must be a "
        "positive number of seconds, not -1.0."
    )


# --- guard rails ----------------------------------------------------------------------


def _run_case(case: type[unittest.TestCase]) -> None:
    result = unittest.TestResult()
    unittest.TestSuite([case("test_it")]).run(result)
    problems = [text for _, text in result.errors + result.failures]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("threads", [False, True], ids=["processes", "threads"])
def test_refused_inside_a_test_case(race_db: str, threads: bool) -> None:
    seen: list[str] = []

    class Inside(TestCase):
        databases = {race_db}

        def test_it(self) -> None:
            with pytest.raises(UnsharedDatabaseError) as caught:
                call_concurrently(2, echo, value=1, threads=threads)
            seen.append(str(caught.value))

    _run_case(Inside)
    others = "other threads" if threads else "other processes"
    assert seen == [
        f"call_concurrently() cannot run calls on database {race_db!r}: this test "
        "runs inside a transaction (Django's TestCase, or a pytest django_db test "
        f"without transaction=True), so its data is not committed and {others} "
        "cannot see it. Use TransactionTestCase, "
        "@pytest.mark.django_db(transaction=True), or a template database "
        "(TemplateDBTransactionTestCase, or use_template_database), whose clone "
        "is restored after each test."
    ]


def test_test_case_databases_bound_the_calls(race_db: str) -> None:
    other = "postgresql" if race_db == "default" else "default"
    seen: list[Any] = []

    class Across(TransactionTestCase):
        databases = {race_db}
        available_apps = ["tests.races"]

        def test_it(self) -> None:
            Counter.objects.using(race_db).create(value=1)
            seen.extend(
                make_concurrent_calls(
                    (count_counters, {"alias": race_db}),
                    (database_name, {"alias": other}),
                    (count_counters, {"alias": other}),
                )
            )

    _run_case(Across)
    assert seen[:2] == [1, connections[other].settings_dict["NAME"]]
    assert type(seen[2].error).__name__ == "DatabaseOperationForbidden"
    assert seen[2].message == (
        f"Database threaded connections to {other!r} are not allowed in this test. Add "
        f"{other!r} to tests.test_concurrency.test_test_case_databases_bound_the_calls."
        "<locals>.Across.databases to ensure proper test isolation and silence "
        "this failure."
    )


def test_databases_bound_the_calls(race_db: str) -> None:
    other = "postgresql" if race_db == "default" else "default"
    [wrapped] = call_concurrently(1, count_counters, alias=other, databases=[race_db])
    assert type(wrapped.error).__name__ == "DatabaseOperationForbidden"
    assert wrapped.message == (
        f"Database {other!r} is not in databases=[{race_db!r}] of "
        "call_concurrently(); add it there to use it in the calls."
    )


def _point_default_at(name: str) -> Any:
    settings = {**connections["default"].settings_dict, "NAME": name}
    return _switch.pointing("default", settings)


def test_in_memory_sqlite_is_refused() -> None:
    name = f"file:{unique_db_name()}?mode=memory&cache=shared"
    with _point_default_at(name), pytest.raises(UnsharedDatabaseError) as excinfo:
        call_concurrently(2, echo, value=1, databases=["default"])
    assert str(excinfo.value) == (
        "call_concurrently() cannot run calls on database 'default': it is an "
        f"in-memory SQLite database ({name!r}), which other processes cannot "
        "open. Give it a file, e.g. DATABASES['default']['TEST']['NAME'] = "
        "'test_db.sqlite3', or pass threads=True to race threads of this "
        "process instead."
    )


def test_threads_share_a_shared_cache_memory_database() -> None:
    name = f"file:{unique_db_name()}?mode=memory&cache=shared"
    with _point_default_at(name):
        with connections["default"].schema_editor() as editor:
            editor.create_model(Counter)
        Counter.objects.create(value=1)
        counts = call_concurrently(
            2, count_counters, alias="default", threads=True, databases=["default"]
        )
        connections["default"].close()
    assert counts == [1, 1]


def test_threads_refuse_a_private_memory_database() -> None:
    with _point_default_at(":memory:"), pytest.raises(UnsharedDatabaseError) as excinfo:
        call_concurrently(2, echo, value=1, threads=True, databases=["default"])
    assert str(excinfo.value) == (
        "call_concurrently() cannot run calls on database 'default': it is an "
        "in-memory SQLite database (':memory:'), which other threads cannot "
        "open. Give it a file, e.g. DATABASES['default']['TEST']['NAME'] = "
        "'test_db.sqlite3' (or a NAME of the form "
        "'file:name?mode=memory&cache=shared')."
    )


# --- thread mode -------------------------------------------------------------------------


def test_each_thread_has_its_own_connection_closed_afterwards(race_db: str) -> None:
    seen: list[Any] = []
    call_concurrently(
        3,
        remember_connection,
        alias=race_db,
        seen=seen,
        threads=True,
        databases=[race_db],
    )
    assert len({id(conn) for conn in seen}) == 3
    assert connections[race_db] not in seen
    assert all(conn.connection is None for conn in seen)


def test_thread_past_its_timeout_is_reported() -> None:
    release = threading.Event()
    try:
        results = call_concurrently(
            2, wait_for, event=release, threads=True, timeout=0.5, databases=[]
        )
    finally:
        release.set()
    for wrapped in results:
        assert isinstance(wrapped.error, CallTimeoutError)
        assert not isinstance(wrapped.error, TerminatedProcessError)
        assert str(wrapped.error) == (
            "The call was still running after its timeout of 0.5s. A thread "
            "cannot be killed: it was left running, and closes its connections "
            "when it ends."
        )


def test_thread_errors_keep_their_traceback() -> None:
    [wrapped] = call_concurrently(1, fail_deep, threads=True, databases=[])
    assert isinstance(wrapped.error, ValueError)
    assert [f.name for f in traceback.extract_tb(wrapped.traceback)] == [
        "fail_deep",
        "_fail_here",
    ]


# --- the parallel runners, end to end ----------------------------------------------------


@contextlib.contextmanager
def copied_project(vendor: str, tmp_path: Path) -> Iterator[Project]:
    """tests/project copied to a temporary directory, with file SQLite test
    databases, reporting the databases its concurrency checks saw."""
    # WAL mode, as the project has it: testbed's runner clones those right.
    proj = Project.copy(tmp_path / "project", vendor, unique_db_name("tbq"))
    proj.env["TESTBED_CACHE_DIR"] = str(tmp_path / "cache")
    proj.env["TESTBED_SQLITE_FILE"] = "1"
    proj.env["CONCURRENCY_REPORT"] = str(tmp_path / "report")
    # This run's own pytest-xdist and pytest-django variables are not theirs.
    for name in list(proj.env):
        if name.startswith(("PYTEST_", "DJANGO_")):
            del proj.env[name]
    try:
        yield proj
    finally:
        proj.drop_everything()


@pytest.fixture
def project(vendor: str, tmp_path: Path) -> Iterator[Project]:
    """tests/project copied for ``vendor`` (see ``copied_project``)."""
    with copied_project(vendor, tmp_path) as proj:
        yield proj


def reported(project: Project) -> list[tuple[str, str]]:
    path = Path(project.env["CONCURRENCY_REPORT"])
    lines = path.read_text().splitlines()
    return [tuple(line.split(" ", 1)) for line in lines]  # type: ignore[misc]


def _clone(project: Project, worker: str) -> str:
    """The name of Django's --parallel clone ``worker`` of the test database."""
    if project.vendor == "sqlite":
        return str(project.root / f"test_{project.name}_{worker}.sqlite3")
    return f"test_{project.name}_{worker}"


def test_manage_py_test_parallel(project: Project) -> None:
    result = project.manage(
        "test", "--noinput", "--parallel", "2", "concurrency_checks", check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Ran 4 tests" in result.stderr, result.stderr
    seen = dict(reported(project))
    clones = {_clone(project, "1"), _clone(project, "2")}
    assert seen["worker"] in clones
    assert seen["race"] in clones
    assert "_tbc_catalog_" in seen["template"]


def test_pytest_xdist(project: Project) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            "--ds",
            "settings",
            "-W",
            "error",
            "concurrency_checks/pytest_calls.py",
        ],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout, result.stdout
    seen = reported(project)
    assert len(seen) == 4
    for worker, name in seen:
        assert worker in ("gw0", "gw1")
        if project.vendor == "sqlite":
            assert name == str(project.root / f"test_{project.name}.sqlite3_{worker}")
        else:
            assert name == f"test_{project.name}_{worker}"


def test_manage_py_refuses_in_memory_sqlite(tmp_path: Path) -> None:
    with copied_project("sqlite", tmp_path) as project:
        del project.env["TESTBED_SQLITE_FILE"]
        result = project.manage(
            "test",
            "--noinput",
            "concurrency_checks.tests.CallsSeeThisWorkersDatabase",
            check=False,
        )
    assert result.returncode == 1
    assert (
        "UnsharedDatabaseError: call_concurrently() cannot run calls on database "
        "'default': it is an in-memory SQLite database "
        "('file:memorydb_default?mode=memory&cache=shared'), which other "
        "processes cannot open."
    ) in result.stderr, result.stderr
