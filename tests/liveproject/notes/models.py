from __future__ import annotations

from django.conf import settings
from django.db import models


class Note(models.Model):
    title = models.CharField(max_length=200, unique=True)
    body = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )

    def __str__(self) -> str:
        return self.title


class Hit(models.Model):
    """One row per request to the hit view."""

    seen = models.IntegerField()


class Tag(models.Model):
    """Seeded by a data migration: a flush would lose it."""

    name = models.CharField(max_length=50, unique=True)
