"""Every form of the template API, run by tests/test_testcases.py under
``manage.py test`` on each engine.

The "catalog" template holds 2 tags, 5 authors and 100 books; the plain
test database holds nothing.
"""

from __future__ import annotations

import urllib.request

from catalog.models import Author, Book, Tag
from django.db import connections, transaction
from django.test import LiveServerTestCase, TestCase, TransactionTestCase

from testbed import (
    TemplateDBLiveServerTestCase,
    TemplateDBTestCase,
    TemplateDBTransactionTestCase,
    use_template_database,
)

BOOKS = 100


class PlainTests(TestCase):
    def test_plain_database_is_empty(self) -> None:
        self.assertEqual(Book.objects.count(), 0)

    def test_context_manager(self) -> None:
        Author.objects.create(name="plain")
        with use_template_database("catalog"):
            self.assertEqual(Book.objects.count(), BOOKS)
            self.assertFalse(Author.objects.filter(name="plain").exists())
            Author.objects.create(name="inside block")
        # Back on the plain database, inside this test's transaction.
        self.assertEqual(Book.objects.count(), 0)
        self.assertTrue(Author.objects.filter(name="plain").exists())
        with use_template_database("catalog"):
            # reload_after_test (the default) undid the block's write.
            self.assertFalse(Author.objects.filter(name="inside block").exists())

    def test_context_manager_without_reload(self) -> None:
        with use_template_database("catalog", reload_after_test=False):
            Author.objects.create(name="kept")
        with use_template_database("catalog"):
            self.assertTrue(Author.objects.filter(name="kept").exists())
        # The default reload above removed it again.
        with use_template_database("catalog", reload_after_test=False):
            self.assertFalse(Author.objects.filter(name="kept").exists())

    @use_template_database("catalog")
    def test_method_decorator(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)
        Book.objects.all().delete()

    @use_template_database("catalog")
    def test_method_decorator_rolled_back(self) -> None:
        # Runs after test_method_decorator: its delete was rolled back.
        self.assertEqual(Book.objects.count(), BOOKS)


@use_template_database("catalog")
class ClassDecoratedTests(TestCase):
    fixtures = ["extra_author"]

    @classmethod
    def setUpTestData(cls) -> None:
        cls.author = Author.objects.create(name="setUpTestData")

    def test_class_data_lands_in_the_clone(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)
        self.assertEqual(Author.objects.count(), 5 + 2)
        self.assertTrue(Author.objects.filter(name="Fixture Author").exists())
        self.assertEqual(Author.objects.get(pk=self.author.pk).name, "setUpTestData")

    def test_writes_roll_back_1(self) -> None:
        Book.objects.filter(
            pk__in=list(Book.objects.values_list("pk", flat=True)[:10])
        ).delete()
        self.assertEqual(Book.objects.count(), BOOKS - 10)

    def test_writes_roll_back_2(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)

    def test_on_commit_and_atomic(self) -> None:
        with transaction.atomic():
            Tag.objects.create(name="atomic")
        self.assertEqual(Tag.objects.count(), 3)


class InheritedTests(TemplateDBTestCase):
    template_database = "catalog"

    @classmethod
    def setUpTestData(cls) -> None:
        Tag.objects.create(name="class tag")

    def test_sees_template_and_class_data(self) -> None:
        self.assertEqual(Tag.objects.count(), 3)
        self.assertEqual(Book.objects.filter(tags__name="fiction").count(), BOOKS)


class TransactionTests(TemplateDBTransactionTestCase):
    template_database = "catalog"

    def test_1_changes_everything(self) -> None:
        Book.objects.all().delete()
        Author.objects.create(name="new")
        Tag.objects.filter(name="poetry").update(name="prose")
        self.assertEqual(Book.objects.count(), 0)

    def test_2_sees_the_template_again(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)
        self.assertFalse(Author.objects.filter(name="new").exists())
        self.assertTrue(Tag.objects.filter(name="poetry").exists())
        # Sequences were restored too: new rows never collide with old ids.
        new = Author.objects.create(name="after restore")
        self.assertGreater(
            new.pk, Author.objects.exclude(pk=new.pk).order_by("-pk")[0].pk
        )

    def test_3_commits_are_visible_to_other_connections(self) -> None:
        Author.objects.create(name="committed")
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM catalog_author WHERE name = 'committed'"
                )
                self.assertEqual(cursor.fetchone()[0], 1)
        finally:
            other.close()


@use_template_database("catalog", reload_after_test=False)
class NoReloadTests(TransactionTestCase):
    def test_1_adds(self) -> None:
        Author.objects.create(name="persisting")

    def test_2_still_there(self) -> None:
        self.assertTrue(Author.objects.filter(name="persisting").exists())

    def test_3_clean_up(self) -> None:
        Author.objects.filter(name="persisting").delete()


class NoReloadCheckTests(TemplateDBTransactionTestCase):
    template_database = "catalog"

    def test_template_state(self) -> None:
        self.assertEqual(Author.objects.count(), 5)


class TransactionMethodTests(TransactionTestCase):
    @use_template_database("catalog")
    def test_1_method_on_template(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)
        Book.objects.all().delete()

    @use_template_database("catalog")
    def test_2_method_restored(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)

    def test_3_plain_database_untouched(self) -> None:
        self.assertEqual(Book.objects.count(), 0)


class LiveServerTests(TemplateDBLiveServerTestCase):
    template_database = "catalog"

    def test_server_sees_the_template(self) -> None:
        with urllib.request.urlopen(f"{self.live_server_url}/count/") as response:
            self.assertEqual(response.read().decode(), str(BOOKS))


@use_template_database("catalog")
class DecoratedLiveServerTests(LiveServerTestCase):
    def test_server_sees_the_template(self) -> None:
        with urllib.request.urlopen(f"{self.live_server_url}/count/") as response:
            self.assertEqual(response.read().decode(), str(BOOKS))


@use_template_database("catalog", "catalog_other")
class SeveralDatabasesTests(TestCase):
    databases = {"default", "other"}

    def test_each_alias_has_its_clone(self) -> None:
        self.assertEqual(Book.objects.count(), BOOKS)
        self.assertEqual(
            list(Book.objects.using("other").values_list("title", flat=True)),
            ["Other Book"],
        )
        self.assertNotEqual(
            connections["default"].settings_dict["NAME"],
            connections["other"].settings_dict["NAME"],
        )


@use_template_database("legacy")
class TTDBTests(TestCase):
    def test_default_is_a_copy_of_the_legacy_database(self) -> None:
        self.assertEqual(
            list(Author.objects.values_list("name", flat=True)), ["Legacy Author"]
        )
