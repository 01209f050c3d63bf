"""PostgreSQL: templates are databases, cloned with ``CREATE DATABASE … TEMPLATE``.

Marks are database comments, read from ``pg_database`` over a connection to
the ``postgres`` maintenance database, so reading one never connects to the
database it belongs to. A sealed template refuses connections: cloning
fails after a 5-second wait while anyone is connected to the source, and a
refused connection fails at once instead.

Per-test restore (``prepare_tracking``) keeps a pristine copy of every table
in a ``_testbed`` schema of the clone: the template refuses connections, and
PostgreSQL has no cross-database queries. Statement triggers with transition
tables log the primary keys each statement touches, so a restore rewrites
only those rows, in one server-side function call. For a superuser, restores
run in replica mode (no trigger or foreign key check fires) and an event
trigger logs DDL; otherwise restores defer constraints and compare a catalog
signature, and decline databases with triggers, rules or cascading keys.
After DDL only a fresh clone is exact.

The engine is ``engine.PostgreSQLEngine`` (naming, marks, creating, cloning,
dropping, locks), built on one module per concern: ``connection`` (the
maintenance, restorer and source connections), ``copying`` (``copy_from``),
``tracking`` (per-test restore) and ``tracking_sql`` (the SQL it installs).
"""
