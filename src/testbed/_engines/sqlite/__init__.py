"""SQLite: templates are files; clones are files or named shared-cache
memory databases.

The engine is ``engine.SQLiteEngine``; ``table_reset`` holds the table
operations on a live test database.
"""

from __future__ import annotations

from testbed._engines.sqlite.engine import SQLiteEngine

__all__ = ["SQLiteEngine"]
