"""A plain Django suite: what Django promises after each kind of test.

It passes under Django's runner; testbed's drop-in tests run it under
testbed's too, where transactional tests are reset without a flush. The
runner orders classes by name (TestCase first), and some steps depend on
the one before, so it runs in one process. Serialized tests come before
other transactional ones: after those, Django's own deserialization fails
(the content types post_migrate made again clash with the serialized ones),
with or without testbed.
"""

from __future__ import annotations

from urllib.request import urlopen

from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.contrib.sites.models import Site
from django.test import LiveServerTestCase, TestCase, TransactionTestCase

from shelf.models import Book, Genre, Shelf

MIGRATED_GENRES = ["fiction", "poetry"]


def post_migrate_state(test: TransactionTestCase) -> None:
    """What a flush leaves: no rows but those post_migrate makes."""
    test.assertEqual(Book.objects.count(), 0)
    test.assertEqual(Genre.objects.count(), 0)
    test.assertEqual(User.objects.count(), 0)
    test.assertEqual(list(Shelf.objects.values_list("label", flat=True)), ["default"])
    test.assertTrue(
        ContentType.objects.filter(app_label="shelf", model="book").exists()
    )
    test.assertTrue(Permission.objects.filter(codename="add_book").exists())
    test.assertEqual(Site.objects.get().domain, "example.com")
    test.assertFalse(Permission.objects.filter(codename="shelve_book").exists())


class Step1RollbackTests(TestCase):
    def test_sees_the_migrated_rows(self) -> None:
        self.assertEqual(
            list(Genre.objects.order_by("name").values_list("name", flat=True)),
            MIGRATED_GENRES,
        )
        Book.objects.create(title="rolled back")

    def test_sees_nothing_of_the_other_test(self) -> None:
        self.assertEqual(Book.objects.count(), 0)


class Step2SerializedTests(TransactionTestCase):
    serialized_rollback = True

    def test_1_changes_migrated_rows(self) -> None:
        self.assertEqual(
            list(Genre.objects.order_by("name").values_list("name", flat=True)),
            MIGRATED_GENRES,
        )
        Genre.objects.filter(name="poetry").update(name="verse")
        Genre.objects.filter(name="fiction").delete()
        Genre.objects.create(name="drama")
        Book.objects.create(title="serialized")

    def test_2_finds_them_back(self) -> None:
        self.assertEqual(
            list(Genre.objects.order_by("name").values_list("name", flat=True)),
            MIGRATED_GENRES,
        )
        self.assertEqual(Book.objects.count(), 0)


class Step3AfterSerializedTests(TransactionTestCase):
    def test_a_flush_left_no_migrated_rows(self) -> None:
        # Step 2's flush skipped post_migrate, and no serialized test came
        # since to load the migrated rows: nothing is left.
        self.assertEqual(Genre.objects.count(), 0)
        Genre.objects.create(name="drama")


class Step4TransactionalTests(TransactionTestCase):
    def test_1_writes_everywhere(self) -> None:
        genre = Genre.objects.create(name="essays")
        Book.objects.create(title="written").genres.add(genre)
        # After a serialized test (with --parallel, in the same worker) there
        # are no content types or permissions: make what the test needs.
        permission = Permission.objects.create(
            codename="shelve_book",
            name="Can shelve a book",
            content_type=ContentType.objects.get_for_model(Book),
        )
        User.objects.create(username="alice").user_permissions.add(permission)
        Shelf.objects.create(label="second")

    def test_2_finds_the_flushed_state(self) -> None:
        post_migrate_state(self)

    def test_3_disturbs_post_migrate_rows(self) -> None:
        Permission.objects.filter(codename="add_book").delete()
        Shelf.objects.all().delete()
        Site.objects.update(domain="changed.example")

    def test_4_finds_them_made_again(self) -> None:
        post_migrate_state(self)


class Step5AvailableAppsTests(TransactionTestCase):
    available_apps = ["shelf"]

    def test_1_writes(self) -> None:
        # post_migrate ran for the available apps only, before the test.
        self.assertTrue(Shelf.objects.filter(label="default").exists())
        Book.objects.create(title="available")
        Genre.objects.create(name="memoir")

    def test_2_finds_its_tables_flushed(self) -> None:
        self.assertEqual(Book.objects.count(), 0)
        self.assertEqual(Genre.objects.count(), 0)


class Step6SequenceTests(TransactionTestCase):
    reset_sequences = True

    def test_ids_start_again(self) -> None:
        self.assertEqual(Book.objects.create(title="first").pk, 1)
        self.assertEqual(Genre.objects.create(name="first").pk, 1)


class Step7TwoDatabaseTests(TransactionTestCase):
    databases = {"default", "other"}

    def test_1_writes_both(self) -> None:
        Book.objects.create(title="default")
        Book.objects.using("other").create(title="other")

    def test_2_finds_both_flushed(self) -> None:
        self.assertEqual(Book.objects.count(), 0)
        self.assertEqual(Book.objects.using("other").count(), 0)
        self.assertTrue(Shelf.objects.using("other").filter(label="default").exists())


class Step8ServerTests(LiveServerTestCase):
    def shelve(self, title: str) -> str:
        with urlopen(f"{self.live_server_url}/shelve/?title={title}") as response:
            return str(response.read().decode())

    def test_1_server_writes(self) -> None:
        self.assertEqual(self.shelve("one"), "1")
        self.assertEqual(Book.objects.get().title, "one")

    def test_2_server_finds_its_write_gone(self) -> None:
        self.assertEqual(self.shelve("two"), "1")
        self.assertEqual(Book.objects.get().title, "two")
