"""Concurrent calls under ``manage.py test`` (run with ``--parallel 2``)."""

from __future__ import annotations

from catalog.models import Author
from django.test import TestCase, TransactionTestCase

from concurrency_checks.calls import (
    count_authors,
    count_books,
    create_author,
    database_name,
    report,
)
from testbed import TemplateDBTransactionTestCase, call_concurrently
from testbed.concurrency import UnsharedDatabaseError


class CallsSeeThisWorkersDatabase(TransactionTestCase):
    def test_name_and_data(self) -> None:
        name = database_name()
        report("worker", name)
        Author.objects.create(name="Parent")
        self.assertEqual(call_concurrently(2, database_name), [name, name])
        self.assertEqual(call_concurrently(2, count_authors), [1, 1])


class UniqueRace(TransactionTestCase):
    def test_one_insert_wins(self) -> None:
        report("race", database_name())
        results = call_concurrently(3, create_author, name="Same")
        self.assertEqual(sorted(results), ["created", "duplicate", "duplicate"])
        self.assertEqual(Author.objects.filter(name="Same").count(), 1)


class OnATemplateClone(TemplateDBTransactionTestCase):
    template_database = "catalog"

    def test_calls_see_the_clone(self) -> None:
        name = database_name()
        report("template", name)
        self.assertEqual(call_concurrently(2, database_name), [name, name])
        self.assertEqual(call_concurrently(2, count_books), [100, 100])


class InsideATestCase(TestCase):
    def test_refused(self) -> None:
        with self.assertRaisesMessage(
            UnsharedDatabaseError, "this test runs inside a transaction"
        ):
            call_concurrently(2, count_authors)
