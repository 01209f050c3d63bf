"""Per-test isolation: what each strategy costs per test, for one engine and size.

Run by ``python -m benchmarks`` in a fresh process per (engine, data set),
so Django's settings are clean::

    python -m benchmarks.isolation --engine postgresql --size medium --tests 20 --json out.json

Each strategy runs ``tests + 1`` tests; the first is a warm-up (it also pays
whatever the class set-up deferred) and is reported apart. A test's time is
the wall time of ``TestCase.__call__``: Django's ``_pre_setup``, ``setUp``,
the test, ``tearDown`` and ``_post_teardown`` (rollback, flush, reload or
testbed's restore), not the class set-up.

Order matters, because the strategies share the test database:

1. the test database is created (60 migrations), empty;
2. testbed builds its template from migrations and the loader, then runs its
   ``TemplateDBTransactionTestCase`` and ``TemplateDBTestCase`` on a clone;
3. the data set is loaded into the test database once;
4. Django's ``TestCase``, then ``TransactionTestCase`` with flush and bulk
   reload, then plain ``TransactionTestCase`` (its flush loses the data set
   after the first test, so it runs last).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
import unittest
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

BENCHMARKS_DIR = Path(__file__).resolve().parent

# Strategy keys.
TESTCASE = "testcase"
FLUSH = "flush"
FLUSH_RELOAD = "flush_reload"
TESTBED_TTC = "testbed_ttc"
TESTBED_TC = "testbed_tc"


def setup_django(engine: str) -> None:
    """Configure Django for the benchmark project on ``engine``."""
    if str(BENCHMARKS_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS_DIR))
    os.environ["BENCHPROJECT_ENGINE"] = engine
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchproject.settings"
    import django

    django.setup()


# --- the test every strategy runs ---------------------------------------------

_serial = 0


def work() -> tuple[int, int]:
    """What each test does: 2 COUNTs, 3 INSERTs and 1 SELECT. Returns the counts."""
    from benchproject.catalog.models import Product
    from benchproject.sales.models import Order

    products = Product.objects.count()
    orders = Order.objects.count()
    write_and_read()
    return products, orders


def write_and_read() -> None:
    """The writing part of a test's work: 3 INSERTs, then 1 SELECT."""
    from benchproject.catalog.models import Brand, Category, Product
    from benchproject.sales.models import Order

    global _serial
    _serial += 1
    category = Category.objects.create(name=f"Bench {_serial}", slug=f"bench-{_serial}")
    brand = Brand.objects.create(name=f"Bench brand {_serial}")
    Product.objects.create(
        sku=f"BENCH-{_serial}",
        name=f"Bench product {_serial}",
        category=category,
        brand=brand,
        price=Decimal("9.99"),
    )
    list(Order.objects.filter(customer_id=1).order_by("-placed_at")[:10])


def _testbed_seconds() -> float:
    """testbed's running total of time spent on database set-up and restores."""
    module = sys.modules.get("testbed._stats")
    return float(module.stats.setup_seconds) if module is not None else 0.0


class Timed:
    """Records each test's wall time (and the part testbed spent restoring),
    and the class set-up's."""

    durations: ClassVar[list[float]]
    testbed_durations: ClassVar[list[float]]
    class_setup: ClassVar[float]

    @classmethod
    def setUpClass(cls) -> None:
        start = time.perf_counter()
        super().setUpClass()  # type: ignore[misc]
        cls.class_setup = time.perf_counter() - start

    def __call__(self, result: Any = None) -> Any:
        testbed_start = _testbed_seconds()
        start = time.perf_counter()
        try:
            return super().__call__(result)  # type: ignore[misc]
        finally:
            type(self).durations.append(time.perf_counter() - start)
            type(self).testbed_durations.append(_testbed_seconds() - testbed_start)


def make_class(name: str, bases: tuple[type, ...], tests: int, **attrs: Any) -> type:
    """A test class with ``tests`` identical test methods (and a warm-up)."""

    def test(self: Any) -> None:
        counts = work()
        # Every strategy but the plain flush must show each test the data set
        # exactly: nothing lost, nothing left over from the previous test.
        if self.expected is not None and counts != self.expected:
            raise AssertionError(
                f"saw {counts} products and orders, expected {self.expected}"
            )

    namespace: dict[str, Any] = {
        "durations": [],
        "testbed_durations": [],
        "class_setup": 0.0,
        "expected": None,
        **attrs,
    }
    for i in range(tests + 1):
        namespace[f"test_{i:04d}"] = test
    return type(name, (Timed, *bases), namespace)


class _Result(unittest.TestResult):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self.problems.append(f"{test}: {self._exc_info_to_string(err, test)}")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self.problems.append(f"{test}: {self._exc_info_to_string(err, test)}")


def run_class(klass: type, *, warmup: bool = True) -> dict[str, Any]:
    """Run every test of ``klass``; its timings in milliseconds, the first
    test left out of the figures if it is a ``warmup``."""
    names = sorted(n for n in vars(klass) if n.startswith("test_"))
    suite = unittest.TestSuite([klass(n) for n in names])
    result = _Result()
    suite.run(result)
    if result.problems:
        raise RuntimeError(f"{klass.__name__} failed:\n" + "\n".join(result.problems))
    ms = [d * 1000 for d in klass.durations]  # type: ignore[attr-defined]
    testbed_ms = [d * 1000 for d in klass.testbed_durations]  # type: ignore[attr-defined]
    skip = 1 if warmup else 0
    if not warmup:
        # Django 5.2+ runs a TransactionTestCase's first _pre_setup (its
        # fixtures, its serialized_rollback load) in setUpClass: the first
        # test's share of the class set-up.
        ms[0] += klass.class_setup * 1000  # type: ignore[attr-defined]
    return {
        "testbed_median_ms": statistics.median(testbed_ms[skip:]),
        "first_ms": ms[0],
        "median_ms": statistics.median(ms[skip:]),
        "min_ms": min(ms[skip:]),
        "max_ms": max(ms[skip:]),
        "all_ms": ms,
        "class_setup_ms": klass.class_setup * 1000,  # type: ignore[attr-defined]
    }


def _progress(message: str) -> None:
    sys.stderr.write(f"  {message}\n")
    sys.stderr.flush()


def expected_counts(size: str) -> tuple[int, int]:
    """What ``work()`` counts in a database holding data set ``size``."""
    from benchproject import loaders

    counts = loaders.row_counts(size)
    return counts["catalog.product"], counts["sales.order"]


# --- the strategies -------------------------------------------------------------


def run_django(size: str, tests: int, out: dict[str, Any]) -> None:
    """Django's own strategies on the test database, which holds the data set."""
    from benchproject import loaders
    from django.test import TestCase, TransactionTestCase

    start = time.perf_counter()
    loaders.load(size, using="default")
    out["one_off"]["load_ms"] = (time.perf_counter() - start) * 1000

    def _fixture_teardown(self: Any) -> None:
        TransactionTestCase._fixture_teardown(self)
        loaders.load(size, using="default")

    expected = expected_counts(size)
    classes = [
        (TESTCASE, make_class("DjangoTestCase", (TestCase,), tests, expected=expected)),
        (
            FLUSH_RELOAD,
            make_class(
                "FlushReload",
                (TransactionTestCase,),
                tests,
                _fixture_teardown=_fixture_teardown,
                expected=expected,
            ),
        ),
        # Last: its flush throws the data set away.
        (FLUSH, make_class("Flush", (TransactionTestCase,), tests)),
    ]
    for key, klass in classes:
        _progress(f"{key} ...")
        try:
            out["strategies"][key] = run_class(klass)
        except Exception:
            out["errors"][key] = traceback.format_exc()
            _progress(f"{key} FAILED")


def run_testbed(
    size: str, tests: int, keep_template: bool, out: dict[str, Any]
) -> None:
    """testbed's template strategies, each timed apart from the one-off costs."""
    info: dict[str, Any] = out["testbed"]
    try:
        import testbed
        from testbed import _clones, _config, _templates
        from testbed._stats import stats

        info["version"] = testbed.__version__
        classes = {
            TESTBED_TTC: getattr(testbed, "TemplateDBTransactionTestCase", None),
            TESTBED_TC: getattr(testbed, "TemplateDBTestCase", None),
        }
        if None in classes.values():
            raise RuntimeError(
                "testbed has no TemplateDBTransactionTestCase/TemplateDBTestCase yet"
            )

        spec = _config.template(size)
        _progress(f"testbed: building template {size!r} ...")
        start = time.perf_counter()
        built = _templates.template(spec)
        if not keep_template:
            # Drop it and the schema it starts from, whichever run built
            # them, so that the whole build (60 migrations, then the
            # loader) is timed here.
            from testbed import _safety

            schema = _templates.template(_templates.schema_spec(spec.alias))
            for old in (built, schema):
                _safety.drop(old.engine, old.name)
                _templates._templates.pop(old.spec.name, None)
            for names in (stats.reused, stats.built):
                if size in names:
                    names.remove(size)
            start = time.perf_counter()
            built = _templates.template(spec)
        info["template_build_ms"] = (time.perf_counter() - start) * 1000
        info["template_reused"] = size in stats.reused
        info["template_name"] = built.name

        # Finding the built template again: what a later run pays instead.
        _templates._templates.pop(spec.name, None)
        start = time.perf_counter()
        _templates.template(spec)
        info["template_lookup_ms"] = (time.perf_counter() - start) * 1000
        if size in stats.reused:
            stats.reused.remove(size)

        engine = built.engine
        info["engine"] = type(engine).__name__
        info["methods"] = describe_engine(engine)

        start = time.perf_counter()
        _clones.working_clone(spec)
        info["clone_ms"] = (time.perf_counter() - start) * 1000
    except Exception:
        out["errors"][TESTBED_TTC] = out["errors"][TESTBED_TC] = traceback.format_exc()
        _progress("testbed FAILED")
        return

    for key, base, attrs in (
        (TESTBED_TTC, classes[TESTBED_TTC], {"reload_after_test": True}),
        (TESTBED_TC, classes[TESTBED_TC], {}),
    ):
        _progress(f"{key} ...")
        before = (stats.restores_tracked, stats.restores_fresh)
        try:
            klass = make_class(
                f"Testbed_{key}",
                (base,),
                tests,
                template_database=size,
                expected=expected_counts(size),
                **attrs,
            )
            out["strategies"][key] = run_class(klass)
            out["strategies"][key]["restores_tracked"] = (
                stats.restores_tracked - before[0]
            )
            out["strategies"][key]["restores_fresh"] = stats.restores_fresh - before[1]
        except Exception:
            out["errors"][key] = traceback.format_exc()
            _progress(f"{key} FAILED")

    info["summary"] = stats.summary()
    if not keep_template:
        try:
            from testbed import _safety

            _clones.drop_working_clones()
            _safety.drop(built.engine, built.name)
            built.engine.close()
        except Exception:
            out["errors"]["testbed cleanup"] = traceback.format_exc()


def describe_engine(engine: Any) -> dict[str, str]:
    """What the engine says about how it clones: its module's summary line,
    and its ``CREATE DATABASE`` strategy where it has one."""
    found: dict[str, str] = {}
    # The vendor's module (or package), testbed._engines.<vendor>.
    vendor_module = ".".join(type(engine).__module__.split(".")[:3])
    doc = (sys.modules[vendor_module].__doc__ or "").strip()
    if doc:
        first = " ".join(doc.split("\n\n")[0].split())
        found["clone"] = first.split(": ", 1)[-1].rstrip(".")
    strategy = getattr(engine, "strategy", None)
    try:
        value = strategy() if callable(strategy) else strategy
    except Exception:
        value = None
    if isinstance(value, str):
        found["strategy"] = value
    return found


# --- one run ------------------------------------------------------------------------


def versions(engine: str) -> dict[str, str]:
    import sqlite3

    import django
    from django.db import connection

    found = {
        "python": platform.python_version(),
        "django": django.get_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    if engine in ("postgresql", "mysql"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            found["server"] = str(cursor.fetchone()[0])
    return found


def run(engine: str, size: str, tests: int, keep_template: bool) -> dict[str, Any]:
    setup_django(engine)
    from benchproject import loaders
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    out: dict[str, Any] = {
        "engine": engine,
        "size": size,
        "tests": tests,
        "rows": sum(loaders.row_counts(size).values()),
        "tables": len(loaders.row_counts(size)),
        "one_off": {},
        "strategies": {},
        "testbed": {},
        "errors": {},
    }
    setup_test_environment()
    start = time.perf_counter()
    old_config = setup_databases(verbosity=0, interactive=False, keepdb=False)
    out["one_off"]["migrate_ms"] = (time.perf_counter() - start) * 1000
    try:
        out["versions"] = versions(engine)
        start = time.perf_counter()
        loaders.prepare(size, using="default")
        out["one_off"]["generate_ms"] = (time.perf_counter() - start) * 1000
        run_testbed(size, tests, keep_template, out)
        run_django(size, tests, out)
    finally:
        from django.db import connections

        connections.close_all()
        teardown_databases(old_config, verbosity=0)
        teardown_test_environment()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", required=True)
    parser.add_argument("--size", required=True, choices=["small", "medium"])
    parser.add_argument("--tests", type=int, default=20)
    parser.add_argument(
        "--json", type=Path, required=True, help="where to write the results"
    )
    parser.add_argument(
        "--keep-template",
        action="store_true",
        help="reuse a template an earlier run built, and keep it afterwards",
    )
    args = parser.parse_args(argv)
    result = run(args.engine, args.size, args.tests, args.keep_template)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
