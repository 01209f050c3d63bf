from __future__ import annotations

from django.db import models


class Genre(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Book(models.Model):
    title = models.CharField(max_length=200)
    genres = models.ManyToManyField(Genre, blank=True)


class Shelf(models.Model):
    """One is made by a post_migrate receiver, as projects make defaults."""

    label = models.CharField(max_length=50, unique=True)
