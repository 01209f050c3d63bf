"""Django's live-server test cases with ``TestCase`` semantics.

``LiveServerTestCase`` and ``StaticLiveServerTestCase`` are Django's, on
top of ``TestCase``: ``setUpTestData`` works, each test rolls back, nothing
is flushed. The class shares its connections with every thread (the
server's and any the test starts) from the end of ``setUpClass`` to the
start of ``tearDownClass`` (``testbed._sharing``), on any engine, with or
without ``testbed.backends.shared``. On databases without transactions
they behave as Django's, as ``TestCase`` does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.staticfiles.testing import (
    StaticLiveServerTestCase as DjangoStaticLiveServerTestCase,
)
from django.db import connections
from django.test import LiveServerTestCase as DjangoLiveServerTestCase
from django.test import TestCase

from testbed._sharing import Sharing


class LiveServerTestCase(DjangoLiveServerTestCase, TestCase):
    """Django's ``LiveServerTestCase`` with ``TestCase`` rollback isolation.

    The live server, and every thread a test starts, use the test's
    connections: they see its uncommitted data (``setUpTestData`` too), and
    what they write is rolled back with the test.
    """

    _testbed_sharing: ClassVar[Sharing | None] = None

    @classmethod
    def _testbed_rolls_back(cls) -> bool:
        # TestCase's own condition for opening its transactions.
        return bool(
            cls._databases_support_transactions()  # type: ignore[attr-defined]
            and cls._databases_support_savepoints()  # type: ignore[attr-defined]
        )

    @classmethod
    def _make_connections_override(cls) -> dict[str, Any]:
        if cls._testbed_rolls_back():
            return {}  # every thread gets the test's connections through testbed
        return super()._make_connections_override()  # type: ignore[misc,no-any-return]

    @classmethod
    def _start_server_thread(cls) -> None:
        if cls._testbed_rolls_back():
            sharing = Sharing(
                connections[alias]
                for alias in cls._databases_names()  # type: ignore[attr-defined]
            )
            sharing.start()
            cls._testbed_sharing = sharing
        try:
            super()._start_server_thread()  # type: ignore[misc]
        except BaseException:
            cls._testbed_stop_sharing()
            if cls._testbed_rolls_back():
                # TestCase.setUpClass returned; its tearDownClass won't run.
                cls._rollback_atomics(cls.cls_atomics)  # type: ignore[attr-defined]
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        # Before TestCase rolls back the class's transaction; waits for the
        # requests in flight.
        cls._testbed_stop_sharing()
        super().tearDownClass()

    @classmethod
    def _testbed_stop_sharing(cls) -> None:
        sharing, cls._testbed_sharing = cls._testbed_sharing, None
        if sharing is not None:
            sharing.stop()

    def _post_teardown(self) -> None:
        super()._post_teardown()  # type: ignore[misc]
        sharing = type(self)._testbed_sharing
        if sharing is not None:
            # A request that left atomic blocks open (now rolled back) fails
            # the test it ran in.
            sharing.check()


class StaticLiveServerTestCase(LiveServerTestCase, DjangoStaticLiveServerTestCase):
    """Django's ``StaticLiveServerTestCase`` (static files served by the
    finders) with ``TestCase`` rollback isolation."""
