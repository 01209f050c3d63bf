"""Read-mostly tests: TestCase on a clone, each test rolled back."""

from __future__ import annotations

from django.db.models import Count, F, Sum

from shop.data import CUSTOMERS, LINES_PER_ORDER, ORDERS, PRODUCTS
from shop.models import Customer, Order, OrderLine, Product, Region
from testbed import TemplateDBTestCase


class ReportTests(TemplateDBTestCase):
    template_database = "shop"

    @classmethod
    def setUpTestData(cls) -> None:
        # Lands in the clone, on top of the template's data set.
        cls.vip = Customer.objects.create(
            email="vip@example.com", region=Region.objects.get(code="EU")
        )

    def test_data_set_is_there(self) -> None:
        self.assertEqual(Customer.objects.count(), CUSTOMERS + 1)
        self.assertEqual(Product.objects.count(), PRODUCTS)
        self.assertEqual(Order.objects.count(), ORDERS)
        self.assertEqual(OrderLine.objects.count(), ORDERS * LINES_PER_ORDER)

    def test_revenue_by_region(self) -> None:
        revenue = (
            OrderLine.objects.values("order__customer__region__code")
            .annotate(total=Sum(F("quantity") * F("product__price_cents")))
            .order_by("order__customer__region__code")
        )
        self.assertEqual(
            [r["order__customer__region__code"] for r in revenue], ["AS", "EU", "NA"]
        )
        self.assertTrue(all(r["total"] > 0 for r in revenue))

    def test_best_customers(self) -> None:
        best = Customer.objects.annotate(n=Count("orders")).order_by("-n", "pk")[:5]
        self.assertEqual(len(best), 5)
        self.assertGreaterEqual(best[0].n, best[4].n)

    def test_changes_roll_back_1(self) -> None:
        Order.objects.filter(pk__lte=100).delete()
        self.assertEqual(Order.objects.count(), ORDERS - 100)

    def test_changes_roll_back_2(self) -> None:
        self.assertEqual(Order.objects.count(), ORDERS)

    def test_class_data(self) -> None:
        self.assertTrue(Customer.objects.filter(pk=self.vip.pk).exists())
