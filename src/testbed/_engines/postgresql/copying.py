"""Copying a database testbed does not own (``copy_from``).

On the same server, with no one connected to the source, a ``CREATE
DATABASE … TEMPLATE`` copy; otherwise ``pg_dump | psql`` into a new database
with the source's encoding and locale. Either way the source is only read.
"""

from __future__ import annotations

import abc
import contextlib
import shutil
import time
from typing import Any

from django.db import DatabaseError

from testbed._engines._base import EngineError
from testbed._engines._pipe import pipe
from testbed._engines.postgresql.connection import (
    DUPLICATE_DATABASE,
    INSUFFICIENT_PRIVILEGE,
    OBJECT_IN_USE,
    PostgreSQLConnections,
    quote,
    sqlstate,
    string,
)


def _tail(text: str, limit: int = 4000) -> str:
    return text if len(text) <= limit else "…" + text[-limit:]


class PostgreSQLCopying(PostgreSQLConnections):
    """``copy_from``: a copy of a database testbed does not own."""

    # The engine proper's (engine.py), shared with ``create_empty`` and ``clone``.

    @abc.abstractmethod
    def _create(self, name: str, sql: str, what: str) -> None: ...

    @abc.abstractmethod
    def _mark_new(self, name: str, mark: str) -> None: ...

    @abc.abstractmethod
    def _copy_sql(self, source: str, target: str) -> str: ...

    def _inspect_source(
        self, source: dict[str, Any]
    ) -> tuple[bool, int, dict[str, str]]:
        """(same server as ours, other sessions on it, its encoding/locale)."""
        name = str(source["NAME"])
        with self._source_connection(source) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT extract(epoch FROM pg_postmaster_start_time())::text,"
                " current_setting('port'),"
                " pg_backend_pid(),"
                " (SELECT count(*) FROM pg_stat_activity"
                "   WHERE datname = current_database() AND pid <> pg_backend_pid()"
                "   AND backend_type <> 'autovacuum worker'),"
                " pg_encoding_to_char(d.encoding), d.datcollate, d.datctype"
                " FROM pg_database d WHERE d.datname = current_database()"
            )
            started, port, pid, sessions, encoding, collate, ctype = cursor.fetchone()
        ours = self._query(
            "SELECT extract(epoch FROM pg_postmaster_start_time())::text, current_setting('port')"
        )[0]
        same = (started, port) == tuple(ours)
        if same:
            # Our own session ends asynchronously after close(); a TEMPLATE
            # copy started before it has gone would wait for it.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and self._query(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]
            ):
                time.sleep(0.005)
            # CREATE DATABASE stops autovacuum itself; anyone else would
            # make it wait 5 seconds and fail.
            sessions = self._query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND backend_type <> 'autovacuum worker'",
                [name],
            )[0][0]
        locale = {"ENCODING": encoding, "LC_COLLATE": collate, "LC_CTYPE": ctype}
        return same, int(sessions), locale

    def copy_from(self, source: dict[str, Any], target: str, mark: str) -> None:
        name = str(source["NAME"])
        same_server, sessions, locale = self._inspect_source(source)
        if same_server and not sessions:
            try:
                self._query(self._copy_sql(name, target))
            except DatabaseError as exc:
                code = sqlstate(exc)
                if code == DUPLICATE_DATABASE:
                    raise EngineError(
                        f"PostgreSQL database {target!r} already exists."
                    ) from exc
                # Someone connected meanwhile, or only the owner may copy it.
                if code not in (OBJECT_IN_USE, INSUFFICIENT_PRIVILEGE):
                    raise EngineError(
                        f"Could not copy PostgreSQL database {name!r} into {target!r}: {exc}"
                    ) from exc
            else:
                self._mark_new(target, mark)
                return
        self._create_for_restore(target, locale)
        try:
            self._dump_restore(source, target)
        except BaseException:
            with contextlib.suppress(DatabaseError):
                self._query(f"DROP DATABASE IF EXISTS {quote(target)} WITH (FORCE)")
            raise
        self._mark_new(target, mark)

    def _create_for_restore(self, target: str, locale: dict[str, str]) -> None:
        # template0, as pg_dump's documentation asks: objects someone added
        # to template1 would clash with the dump's.
        base = f"CREATE DATABASE {quote(target)} TEMPLATE template0"
        options = " ".join(f"{key} {string(value)}" for key, value in locale.items())
        try:
            self._query(f"{base} {options}")
        except DatabaseError as exc:
            if sqlstate(exc) == DUPLICATE_DATABASE:
                raise EngineError(
                    f"PostgreSQL database {target!r} already exists."
                ) from exc
            # The source's locale may not exist on this server.
            encoding = string(locale["ENCODING"])
            self._create(
                target,
                f"{base} ENCODING {encoding}",
                f"create PostgreSQL database {target!r}",
            )

    def _dump_restore(self, source: dict[str, Any], target: str) -> None:
        from testbed._engines import backend_of

        name = str(source["NAME"])
        pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
        if not pg_dump or not psql:
            raise EngineError(
                f"Copying PostgreSQL database {name!r} needs pg_dump and psql on PATH "
                "(Debian/Ubuntu: apt install postgresql-client)."
            )

        def command(
            settings: dict[str, Any], program: str, args: list[str]
        ) -> tuple[list[str], dict[str, str]]:
            client = backend_of(settings).DatabaseWrapper.client_class
            argv, env = client.settings_to_cmd_args_env(settings, args)
            return [program, *argv[1:]], env or {}

        dump_argv, dump_env = command(
            source,
            pg_dump,
            ["--no-password", "--no-owner", "--no-privileges", "--format=plain"],
        )
        restore_argv, restore_env = command(
            self.settings_for(target),
            psql,
            [
                "--no-password",
                "--no-psqlrc",
                "--quiet",
                "--set=ON_ERROR_STOP=1",
                "--single-transaction",
            ],
        )
        dump, restore = pipe(
            dump_argv, restore_argv, dump_env=dump_env, load_env=restore_env
        )
        if dump.code:
            raise EngineError(
                f"pg_dump of PostgreSQL database {name!r} failed (exit {dump.code}): "
                f"{_tail(dump.errors)}"
            )
        if restore.code:
            raise EngineError(
                f"Restoring a dump of PostgreSQL database {name!r} into {target!r} failed "
                f"(psql exit {restore.code}): {_tail(restore.errors)}"
            )
