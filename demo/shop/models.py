from __future__ import annotations

from django.db import models


class Region(models.Model):
    code = models.CharField(max_length=2, unique=True)
    name = models.CharField(max_length=50)


class Customer(models.Model):
    email = models.EmailField(unique=True)
    region = models.ForeignKey(Region, on_delete=models.PROTECT)


class Product(models.Model):
    sku = models.CharField(max_length=20, unique=True)
    price_cents = models.PositiveIntegerField()
    stock = models.PositiveIntegerField()


class Order(models.Model):
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="orders"
    )
    placed_at = models.DateTimeField()


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField()
