"""The demo's data set: deterministic, ~40,000 rows, loaded in bulk once
per template build (not once per test)."""

from __future__ import annotations

import datetime
import random

CUSTOMERS = 3_000
PRODUCTS = 500
ORDERS = 10_000
LINES_PER_ORDER = 2


def load(*, using: str) -> None:
    from shop.models import Customer, Order, OrderLine, Product, Region

    rng = random.Random(42)
    regions = list(Region.objects.using(using).order_by("code"))
    Customer.objects.using(using).bulk_create(
        (
            Customer(email=f"c{i}@example.com", region=rng.choice(regions))
            for i in range(CUSTOMERS)
        ),
        batch_size=2_000,
    )
    Product.objects.using(using).bulk_create(
        (
            Product(sku=f"SKU{i:05}", price_cents=rng.randint(100, 20_000), stock=100)
            for i in range(PRODUCTS)
        ),
        batch_size=2_000,
    )
    customers = list(Customer.objects.using(using).values_list("pk", flat=True))
    products = list(Product.objects.using(using).values_list("pk", flat=True))
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    Order.objects.using(using).bulk_create(
        (
            Order(
                customer_id=rng.choice(customers),
                placed_at=start + datetime.timedelta(minutes=i),
            )
            for i in range(ORDERS)
        ),
        batch_size=2_000,
    )
    orders = Order.objects.using(using).values_list("pk", flat=True)
    OrderLine.objects.using(using).bulk_create(
        (
            OrderLine(
                order_id=order,
                product_id=rng.choice(products),
                quantity=rng.randint(1, 3),
            )
            for order in orders
            for _ in range(LINES_PER_ORDER)
        ),
        batch_size=2_000,
    )
