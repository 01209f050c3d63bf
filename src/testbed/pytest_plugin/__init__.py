"""testbed's pytest plugin: an extension of pytest-django, never a replacement.

Registered through the ``pytest11`` entry point as ``testbed``. pytest-django
keeps its marker, fixtures and flags; this package adds to them. Django is
imported lazily: the plugin loads before settings are configured.

Layout (each concern in its own module):

- ``_live_server``: ``live_server`` on a plain ``django_db`` test, sharing
  the test's connection (shared connections).
- ``_setup``: schema-safe ``--reuse-db``, template databases in pytest,
  xdist builds, the session summary.
"""

from __future__ import annotations

# Each concern registers its own hooks and fixtures.
pytest_plugins = ["testbed.pytest_plugin._live_server"]
