"""Models for the concurrency tests' races (tests/test_concurrency.py).

No migrations: the tests create these tables in databases of their own.
"""

from __future__ import annotations

from django.db import models


class Counter(models.Model):
    value = models.IntegerField(default=0)


class Ticket(models.Model):
    code = models.CharField(max_length=20, unique=True)
