"""MariaDB and MySQL: clones are copied table by table on the server.

Neither server can create a database from a template, so a clone is built
from the template's own DDL (``SHOW CREATE ...``) and filled with
``INSERT INTO clone.t SELECT ... FROM template.t``, which never leaves the
server. ``benchmarks/mysql_clone.py`` measures this against Django's
``mysqldump | mysql`` and variants.

The ownership mark lives in a one-row table ``_testbed_mark`` inside the
database (MySQL 8 has no database comments). Tables, and triggers, whose
names start with ``_testbed_`` belong to the engine: they are never copied
into a clone and never restored.

Per-test restore: ``prepare_tracking`` adds row triggers that log the primary
key of every row a test inserts, updates or deletes into ``_testbed_dirty``.
``_reset_tracked`` copies just those rows back from the template, which the
server can read across databases, and puts AUTO_INCREMENT counters back. What
triggers cannot see (TRUNCATE, DDL) changes the schema signature, and then
nothing is touched and the core makes a fresh clone.

The engine is ``engine.MySQLEngine`` (naming, marks, creating, cloning,
dropping, locks), built on one module per concern: ``connection`` (the admin
and worker connections, their session settings), ``schema`` (reading what a
database holds), ``copying`` (SQL copies on one server, ``mysqldump | mysql``
across servers), ``tracking`` (per-test restore) and ``signature`` (how a
reset knows only rows changed).
"""
