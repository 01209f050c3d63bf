"""HTTP and database helpers for the live-server tests."""

from __future__ import annotations

import urllib.error
import urllib.request

from django.db import connections


def fetch(url: str, *, method: str = "GET") -> tuple[int, str]:
    """``(status, body)`` of a request to ``url``, errors included."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def committed(table: str) -> int:
    """Rows of ``table`` a connection of its own sees: only committed ones."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            return int(cursor.fetchone()[0])
    finally:
        other.close()


def on_shared_engine() -> bool:
    return bool(connections.settings["default"]["ENGINE"] == "testbed.backends.shared")
