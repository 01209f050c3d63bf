"""Transactional tests reset by undoing what they changed, not by a flush.

After each ``TransactionTestCase`` test Django flushes the database: every
table of the project emptied (``TRUNCATE`` or ``DELETE``), then
``post_migrate`` run again, which recreates content types, permissions and
whatever the project's receivers make. ``serialized_rollback`` adds a JSON
dump of the whole database, made at set-up and loaded again before each
such test. On a real project that costs from a hundred milliseconds to
minutes per test.

Here the same end state is reached for less:

- Only tables that hold rows are emptied, found in one query; Django's
  flush empties every table of the project, full or not.
- What ``post_migrate`` made is kept while no test touches it: the first
  reset runs the real thing and notes which tables it filled and their
  signatures (``TableReset.signatures``); later resets leave those tables
  alone while their signatures and the settings object are unchanged, and
  otherwise run it again, as Django does.
- ``serialized_rollback`` needs no dump: the migrated state is read back
  from the schema template's baseline (``TableReset.restore_baseline``),
  only for tables that differ from it. A serialized test's flush leaves
  tables that still hold exactly that state as they are ("pending"), since
  the next serialized test would load them again; anything else that uses
  the database first finds them emptied (``settle``).

What differs from Django's flush, by design: rows ``post_migrate`` made
keep their ids between tests (Django recreates them with new ids), and
``post_migrate`` receivers run again only when their tables changed.
Sequences are left where the tests took them, as Django's flush does.

``TESTBED["TRANSACTIONAL_RESET"] = "flush"`` keeps Django's behaviour
exactly. A database testbed did not make, or an engine it has no
operations for, is flushed as Django does, with a note in the summary.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from testbed import _safety
from testbed._engines import TableReset, table_reset_for
from testbed._settings import ConfigurationError, testbed_settings
from testbed._stats import note, stats

MODES = ("tracked", "flush")


def mode() -> str:
    """``TESTBED["TRANSACTIONAL_RESET"]``: "tracked" (the default) or "flush"."""
    value = testbed_settings().get("TRANSACTIONAL_RESET", "tracked")
    if value not in MODES:
        raise ConfigurationError(
            f"settings.TESTBED['TRANSACTIONAL_RESET'] is {value!r}; use 'tracked' "
            "(transactional tests undo what they changed) or 'flush' (Django's "
            "flush after each one)."
        )
    return str(value)


class SerializedBaseline(str):
    """What ``connection._test_serialized_contents`` holds instead of
    Django's JSON dump: empty, and naming where the migrated state is kept.

    Django only checks that the attribute exists and passes it to
    ``deserialize_db_from_string``, which testbed answers by restoring
    ``tables`` from ``source``. Pickled to ``--parallel`` workers with it;
    code that deserializes it some other way loads nothing.
    """

    vendor: str
    source: str
    # Tables Django would serialize that hold rows in the migrated state.
    tables: frozenset[str]
    # Their signatures in a fresh clone (empty if the database was reused).
    signatures: dict[str, Hashable]

    def __new__(
        cls,
        *,
        vendor: str,
        source: str,
        tables: frozenset[str],
        signatures: dict[str, Hashable],
    ) -> SerializedBaseline:
        # An empty JSON list: loading it adds nothing, and it is true, as
        # Django's --parallel workers only take contents that are.
        self = super().__new__(cls, "[]")
        self.vendor = vendor
        self.source = source
        self.tables = tables
        self.signatures = signatures
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.vendor, self.source, self.tables, self.signatures))


def _rebuild(
    vendor: str, source: str, tables: frozenset[str], signatures: dict[str, Hashable]
) -> SerializedBaseline:
    return SerializedBaseline(
        vendor=vendor, source=source, tables=tables, signatures=signatures
    )


@dataclass
class _PostMigrate:
    """The tables ``post_migrate`` filled, and their signatures then."""

    tables: frozenset[str]
    signatures: dict[str, Hashable]
    # The settings object in effect: receivers read settings (SITE_ID, ...),
    # so a test under other settings gets the real thing again.
    settings: weakref.ReferenceType[Any]


@dataclass
class _Database:
    """One test database this process resets."""

    alias: str
    name: str
    # Kept between resets: what the engine learned (a superuser?).
    memo: dict[str, Any] = field(default_factory=dict)
    post_migrate: _PostMigrate | None = None
    # Tables that hold the migrated state although Django's flush would
    # have emptied them: the next serialized test needs them as they are.
    pending: set[str] = field(default_factory=set)
    # For tables known to have held exactly the migrated state: their
    # signature then.
    baseline: dict[str, Hashable] = field(default_factory=dict)
    baseline_tables: frozenset[str] = frozenset()


_lock = threading.RLock()
_databases: dict[tuple[str, str], _Database] = {}
# (alias, name) -> why it is flushed as Django does.
_refused: dict[tuple[str, str], str] = {}
_management_imported = False


def _current_settings() -> Any:
    from django.conf import settings

    # LazySettings' private holder: override_settings swaps it for another.
    return settings._wrapped  # type: ignore[misc]


def _ops(db: _Database) -> TableReset:
    from django.db import connections

    ops = table_reset_for(connections[db.alias])
    assert ops is not None
    ops.memo = db.memo
    return ops


def _database(alias: str) -> _Database | None:
    """The reset state of the database ``alias`` points at now; None if it
    is flushed as Django does (said once in the summary)."""
    from django.db import connections

    connection = connections[alias]
    name = str(connection.settings_dict["NAME"])
    key = (alias, name)
    with _lock:
        found = _databases.get(key)
        if found is not None:
            return found
        if key in _refused:
            return None
        why: str | None
        if table_reset_for(connection) is None:
            why = (
                f"testbed has no table operations for {connection.vendor}; "
                "its transactional tests are flushed as Django does"
            )
        else:
            why = _safety.why_not_reset(alias, connection.settings_dict)
        if why is not None:
            _refused[key] = why
            note(f"database {alias!r} ({name}): {why}")
            return None
        found = _databases[key] = _Database(alias, name)
        return found


# --- after a test: Django's flush, for less ---------------------------------------


def flush(
    test: Any, alias: str, *, allow_cascade: bool, inhibit_post_migrate: bool
) -> bool:
    """Leave ``alias``'s database as Django's flush after ``test`` would;
    False if testbed does not (the caller runs Django's flush)."""
    db = _database(alias)
    if db is None:
        return False
    from django.db import DatabaseError, connections

    try:
        _flush(db, test, connections[alias], allow_cascade, inhibit_post_migrate)
    except DatabaseError as exc:
        # The database is as the test left it, or the flush's own
        # transaction rolled back: Django's flush still applies.
        with _lock:
            _databases.pop((db.alias, db.name), None)
            _refused[db.alias, db.name] = f"a reset failed ({exc})"
        _close(db)
        note(
            f"database {alias!r} ({db.name}): resetting it failed ({exc}); its "
            "transactional tests are flushed as Django does from now on. Set "
            "TESTBED['TRANSACTIONAL_RESET'] = 'flush' if this recurs."
        )
        return False
    return True


def _flush(
    db: _Database,
    test: Any,
    connection: Any,
    allow_cascade: bool,
    inhibit_post_migrate: bool,
) -> None:
    ops = _ops(db)
    # Django's flush empties django_table_names(only_existing=True): its
    # models' tables that exist (the engine lists those for less).
    introspection = connection.introspection
    existing = ops.existing_tables()
    tables = {
        table
        for table in introspection.django_table_names(include_views=False)
        if introspection.identifier_converter(table) in existing
    }
    if allow_cascade and ops.flush_cascades:
        tables = ops.referencing(tables)
    full = ops.nonempty(tables)
    baseline = getattr(connection, "_test_serialized_contents", None)
    if (
        inhibit_post_migrate
        and getattr(test, "serialized_rollback", False)
        and isinstance(baseline, SerializedBaseline)
        and db.baseline_tables
    ):
        # The next serialized test loads the migrated state again. Tables of
        # it are brought back to that state (rows the test left alone are
        # not written) instead of being emptied and loaded whole, and wait
        # for whatever comes next: the next serialized test finds them
        # ready, anything else finds them emptied (settle).
        candidates = full & db.baseline_tables
        changed = {
            table
            for table, signature in ops.signatures(candidates).items()
            if db.baseline.get(table) != signature
        }
        ops.restore_baseline(baseline.source, changed, exact=True)
        db.baseline.update(ops.signatures(changed))
        # A kept row must not point at one the flush removes.
        keep = candidates - ops.referencing(full - candidates)
        ops.empty(full - keep)
        db.pending = (db.pending - full) | keep
        stats.resets_rows += 1
        return
    db.pending -= full
    if inhibit_post_migrate:
        ops.empty(full)
        stats.resets_rows += 1
        return
    made = db.post_migrate
    if (
        made is not None
        and made.settings() is _current_settings()
        and made.tables <= tables
        and ops.signatures(made.tables) == made.signatures
    ):
        ops.empty(full - made.tables)
        stats.resets_rows += 1
        return
    ops.empty(full)
    _emit_post_migrate(db.alias)
    filled = frozenset(ops.nonempty(tables))
    db.post_migrate = _PostMigrate(
        filled, ops.signatures(filled), weakref.ref(_current_settings())
    )
    stats.resets_rows += 1
    stats.resets_post_migrate += 1


def _emit_post_migrate(alias: str) -> None:
    """``post_migrate``, as Django's flush sends it."""
    global _management_imported
    from django.core.management.sql import emit_post_migrate_signal

    if not _management_imported:
        # The flush command imports each app's management module first, so
        # that receivers registered there are connected.
        import importlib

        from django.apps import apps

        for app_config in apps.get_app_configs():
            try:
                importlib.import_module(".management", app_config.name)
            except ImportError:
                pass
        _management_imported = True
    emit_post_migrate_signal(0, False, alias)


# --- before a test: what a serialized test's flush left -------------------------


def settle(aliases: Iterable[str], *, serialized: Collection[str] = ()) -> None:
    """Empty the tables a serialized test's flush left holding the migrated
    state, on ``aliases`` but those in ``serialized`` (whose next test loads
    that state anyway)."""
    for alias in aliases:
        if alias in serialized:
            continue
        db = _pending_database(alias)
        if db is not None:
            _settle(db)


def _pending_database(alias: str) -> _Database | None:
    from django.db import connections

    name = str(connections[alias].settings_dict["NAME"])
    db = _databases.get((alias, name))
    return db if db is not None and db.pending else None


def _settle(db: _Database) -> None:
    pending, db.pending = db.pending, set()
    _ops(db).empty(pending)


def settle_all() -> None:
    """At the end of the run: what Django's last flush left empty is empty,
    for a database that is kept."""
    from django.db import connections

    for db in list(_databases.values()):
        if db.pending and connections.settings[db.alias]["NAME"] == db.name:
            try:
                _settle(db)
            except Exception as exc:  # at the end, report and go on
                note(f"could not empty {sorted(db.pending)} in {db.name}: {exc}")


# --- serialized_rollback ------------------------------------------------------------


def baseline_for(
    connection: Any, *, template: Any, fresh: bool
) -> SerializedBaseline | None:
    """What stands in for ``serialize_db_to_string()`` of a test database
    testbed cloned from the schema template ``template``; None if Django
    must serialize it (said in the summary)."""
    ops = table_reset_for(connection)
    if ops is None:
        return None
    source = template.engine.baseline_source(template.name)
    try:
        found = ops.baseline_tables(source)
        if found is not None:
            tables = frozenset(found & _serializable_tables(connection))
            signatures = ops.signatures(tables) if fresh else {}
    finally:
        ops.close()
    if found is None:
        note(
            f"database {connection.alias!r}: serialized_rollback serializes it as "
            "Django does: its schema template keeps no baseline (rebuild it "
            "with --create-db, or without --keepdb)"
        )
        return None
    return SerializedBaseline(
        vendor=connection.vendor, source=source, tables=tables, signatures=signatures
    )


def _serializable_tables(connection: Any) -> set[str]:
    """The tables of the models Django's ``serialize_db_to_string`` dumps."""
    from django.apps import apps
    from django.conf import settings
    from django.db import router
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection)
    tables: set[str] = set()
    for app_config in apps.get_app_configs():
        if (
            app_config.models_module is None
            or app_config.label not in loader.migrated_apps
            or app_config.name in settings.TEST_NON_SERIALIZED_APPS
        ):
            continue
        for model in app_config.get_models():
            if not (
                model._meta.can_migrate(connection)
                and router.allow_migrate_model(connection.alias, model)
            ):
                continue
            tables.add(model._meta.db_table)
            for m2m in model._meta.local_many_to_many:
                through = m2m.remote_field.through
                if through is not None and through._meta.auto_created:
                    tables.add(through._meta.db_table)
    return tables


def restore_serialized(connection: Any, baseline: SerializedBaseline) -> None:
    """``deserialize_db_from_string`` of the migrated state: each table that
    differs from it gets its rows back."""
    db = _database(connection.alias)
    if db is None:
        raise ConfigurationError(
            f"testbed cannot restore the migrated state of database "
            f"{connection.alias!r}, which Django did not serialize at set-up. "
            "Set TESTBED['TRANSACTIONAL_RESET'] = 'flush' to serialize it as "
            "Django does."
        )
    ops = _ops(db)
    if not db.baseline_tables:
        db.baseline_tables = baseline.tables
        db.baseline = dict(baseline.signatures)
    stale = {
        table
        for table, signature in ops.signatures(baseline.tables).items()
        if db.baseline.get(table) != signature
    }
    ops.restore_baseline(baseline.source, stale)
    db.baseline.update(ops.signatures(stale))
    db.pending -= baseline.tables
    stats.serialized_restores += 1


def release(alias: str, name: str) -> None:
    """Let go of what is kept open for resets of database ``name`` (before
    it is dropped)."""
    with _lock:
        db = _databases.pop((alias, name), None)
    if db is not None:
        _close(db)


def release_all() -> None:
    """Let go of everything kept open for resets, at the end of the run."""
    with _lock:
        found = list(_databases.values())
        _databases.clear()
        _refused.clear()
    for db in found:
        _close(db)


def _close(db: _Database) -> None:
    from django.db import connections

    if db.alias in connections:
        _ops(db).close()
