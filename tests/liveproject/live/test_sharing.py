"""testbed.testcases.LiveServerTestCase: the server shares the test's
transaction. Run on every engine, on plain DATABASES and on the shared
engine."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from django.db import connection, transaction
from notes.models import Hit, Note, Tag

from live.helpers import committed, fetch
from testbed import testcases


class SharedConnectionTests(testcases.LiveServerTestCase):
    @classmethod
    def setUpTestData(cls) -> None:
        cls.note = Note.objects.create(title="from setUpTestData")

    def get(self, path: str, *, method: str = "GET") -> tuple[int, str]:
        return fetch(self.live_server_url + path, method=method)

    def test_01_server_sees_the_tests_data(self) -> None:
        Note.objects.create(title="from the test")
        status, body = self.get("/count/")
        self.assertEqual(status, 200)
        self.assertEqual(
            json.loads(body)["titles"], ["from setUpTestData", "from the test"]
        )
        self.assertEqual(committed("notes_note"), 0)

    def test_02_the_test_sees_the_servers_writes(self) -> None:
        self.assertEqual(self.get("/hit/", method="POST"), (200, "1"))
        self.assertEqual(Hit.objects.get().seen, 1)
        self.assertEqual(committed("notes_hit"), 0)

    def test_03_the_next_test_starts_clean(self) -> None:
        self.assertFalse(Hit.objects.exists())
        self.assertEqual(
            list(Note.objects.values_list("title", flat=True)), ["from setUpTestData"]
        )
        # Data from migrations survives: nothing was flushed.
        self.assertEqual(list(Tag.objects.values_list("name", flat=True)), ["seeded"])

    def test_04_twenty_parallel_requests(self) -> None:
        start = threading.Barrier(20)

        def post(_: int) -> tuple[int, str]:
            start.wait(timeout=60)
            return self.get("/hit/", method="POST")

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(post, range(20)))
        self.assertEqual([status for status, _ in results], [200] * 20)
        # Each request saw the rows of those before it: they took turns.
        self.assertEqual(sorted(int(body) for _, body in results), list(range(1, 21)))
        self.assertEqual(Hit.objects.count(), 20)

    def test_05_nothing_left_behind(self) -> None:
        self.assertFalse(Hit.objects.exists())
        self.assertEqual(committed("notes_hit"), 0)

    def test_06_threads_the_test_starts(self) -> None:
        seen: list[bool] = []

        def work() -> None:
            seen.append(Note.objects.filter(title="from setUpTestData").exists())
            Hit.objects.create(seen=1)
            with transaction.atomic():
                Hit.objects.create(seen=2)

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(seen, [True, True, True])
        self.assertEqual(Hit.objects.count(), 6)
        self.assertEqual(committed("notes_hit"), 0)

    def test_07_views_atomic_blocks_nest_in_the_tests_transaction(self) -> None:
        mine = len(connection.atomic_blocks)  # the class's and this test's
        status, body = self.get("/depth/")
        self.assertEqual(status, 200)
        # The request's own savepoint, ATOMIC_REQUESTS, the view's block.
        self.assertEqual(json.loads(body), {"blocks": mine + 3, "savepoints": mine + 2})

    def test_08_durable_block_in_a_view(self) -> None:
        self.assertEqual(self.get("/durable/", method="POST"), (201, "ok"))
        self.assertTrue(Note.objects.filter(title="durable").exists())

    def test_09_a_request_that_raises(self) -> None:
        status, _ = self.get("/boom/")
        self.assertEqual(status, 500)
        # ATOMIC_REQUESTS rolled the view back; the test's transaction lives on.
        self.assertFalse(Note.objects.filter(title="before boom").exists())
        self.assertEqual(json.loads(self.get("/count/")[1])["notes"], 1)

    def test_10_a_failed_statement_in_a_request(self) -> None:
        self.assertEqual(self.get("/db-error/")[0], 500)
        self.assertEqual(Tag.objects.count(), 1)
        Note.objects.create(title="after the error")
        self.assertEqual(json.loads(self.get("/count/")[1])["notes"], 2)

    def test_11_a_failed_statement_a_view_catches(self) -> None:
        # On PostgreSQL this breaks the transaction the view ran in; the
        # request's own savepoint is rolled back, not the test's transaction.
        self.assertEqual(self.get("/db-error-caught/"), (200, "caught"))
        self.assertEqual(Note.objects.get().title, "from setUpTestData")
        self.assertEqual(self.get("/hit/", method="POST"), (200, "1"))

    def test_12_a_view_that_closes_the_connection(self) -> None:
        Note.objects.create(title="before the close")
        self.assertEqual(self.get("/close/"), (200, "2"))
        self.assertEqual(Note.objects.count(), 2)
        self.assertEqual(json.loads(self.get("/count/")[1])["notes"], 2)

    def test_13_a_view_cannot_commit_the_tests_transaction(self) -> None:
        self.assertEqual(
            self.get("/commit/"),
            (409, "This is forbidden when an 'atomic' block is active."),
        )
        self.assertEqual(committed("notes_note"), 0)

    def test_14_after_the_bad_requests(self) -> None:
        self.assertEqual(
            list(Note.objects.values_list("title", flat=True)), ["from setUpTestData"]
        )
        self.assertFalse(Hit.objects.exists())
        self.assertEqual(committed("notes_note"), 0)
