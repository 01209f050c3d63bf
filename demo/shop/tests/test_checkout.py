"""Tests that need real commits: TransactionTestCase on a clone. Instead of
a flush that would wipe the data set, each test gets the template's state
back."""

from __future__ import annotations

from django.db import connections

from shop.checkout import OutOfStock, place_order
from shop.data import ORDERS
from shop.models import Customer, Order, Product
from testbed import TemplateDBTransactionTestCase


class CheckoutTests(TemplateDBTransactionTestCase):
    template_database = "shop"

    def test_order_commits(self) -> None:
        order = place_order(Customer.objects.get(pk=1), {"SKU00001": 2})
        # Committed: another connection sees it.
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM shop_order WHERE id = %s", [order.pk]
                )
                self.assertEqual(cursor.fetchone()[0], 1)
        finally:
            other.close()
        self.assertEqual(Product.objects.get(sku="SKU00001").stock, 98)

    def test_out_of_stock_rolls_back_the_whole_order(self) -> None:
        with self.assertRaises(OutOfStock):
            place_order(Customer.objects.get(pk=1), {"SKU00002": 1, "SKU00003": 101})
        self.assertEqual(Order.objects.count(), ORDERS)
        self.assertEqual(Product.objects.get(sku="SKU00002").stock, 100)

    def test_every_test_starts_from_the_template(self) -> None:
        # Whatever the tests above committed is gone.
        self.assertEqual(Order.objects.count(), ORDERS)
        self.assertEqual(Product.objects.get(sku="SKU00001").stock, 100)

    def test_bulk_change(self) -> None:
        Product.objects.update(stock=0)
        self.assertFalse(Product.objects.filter(stock__gt=0).exists())

    def test_after_bulk_change(self) -> None:
        self.assertEqual(
            Product.objects.filter(stock=100).count(), Product.objects.count()
        )
