"""The code under test: placing an order must not oversell stock."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from shop.models import Customer, Order, OrderLine, Product


class OutOfStock(Exception):
    pass


def place_order(customer: Customer, items: dict[str, int]) -> Order:
    with transaction.atomic():
        order = Order.objects.create(customer=customer, placed_at=timezone.now())
        for sku, quantity in items.items():
            product = Product.objects.select_for_update().get(sku=sku)
            if product.stock < quantity:
                raise OutOfStock(sku)
            product.stock -= quantity
            product.save(update_fields=["stock"])
            OrderLine.objects.create(order=order, product=product, quantity=quantity)
        return order
