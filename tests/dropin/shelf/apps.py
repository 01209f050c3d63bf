from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def default_shelf(using: str, **kwargs: Any) -> None:
    from shelf.models import Shelf

    Shelf.objects.using(using).get_or_create(label="default")


def record_connection(connection: Any, **kwargs: Any) -> None:
    """Looks every new connection up by alias, as django.contrib.postgres
    does; Django's own set-up connections use NO_DB_ALIAS, which such
    receivers skip."""
    import os

    from django.db import connections
    from django.db.backends.base.base import NO_DB_ALIAS

    if connection.alias != NO_DB_ALIAS:
        connections[connection.alias]
    path = os.environ.get("DROPIN_ALIASES")
    if path:
        with open(path, "a") as out:
            out.write(connection.alias + "\n")


class ShelfConfig(AppConfig):
    name = "shelf"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        post_migrate.connect(default_shelf, sender=self)
        connection_created.connect(record_connection)
