"""Helpers shared by the end-to-end tests: server-level SQL, and projects
copied to a temporary directory and run in subprocesses, as users run them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).parent / "project"


def _server_settings(vendor: str) -> dict[str, Any]:
    from tests import settings

    return dict(settings.DATABASES[vendor])


def server_sql(vendor: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one statement on ``vendor``'s server, outside any test database."""
    db = _server_settings(vendor)
    if vendor == "postgresql":
        import psycopg

        with psycopg.connect(
            host=db["HOST"],
            port=db["PORT"],
            user=db["USER"],
            password=db["PASSWORD"],
            dbname="postgres",
            autocommit=True,
        ) as conn:
            cursor = conn.execute(sql)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []
    import MySQLdb

    conn = MySQLdb.connect(
        host=db["HOST"], port=int(db["PORT"]), user=db["USER"], password=db["PASSWORD"]
    )
    try:
        cursor = conn.cursor()
        cursor.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        conn.close()


def databases_containing(vendor: str, text: str) -> list[str]:
    """Names of the databases on ``vendor``'s server that contain ``text``."""
    if vendor == "postgresql":
        rows = server_sql(
            vendor,
            f"SELECT datname FROM pg_database WHERE strpos(datname, '{text}') > 0",
        )
    else:
        rows = server_sql(
            vendor,
            "SELECT schema_name FROM information_schema.schemata "
            f"WHERE LOCATE('{text}', schema_name) > 0",
        )
    return sorted(str(r[0]) for r in rows)


def drop_databases_containing(vendor: str, text: str) -> None:
    """Drop what a test left on the server: every database named with ``text``."""
    if vendor == "sqlite":
        return  # files in tmp_path
    for name in databases_containing(vendor, text):
        if vendor == "postgresql":
            server_sql(vendor, f'ALTER DATABASE "{name}" IS_TEMPLATE false')
            server_sql(vendor, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            server_sql(vendor, f"DROP DATABASE IF EXISTS `{name}`")


def create_foreign_database(vendor: str, name: str) -> None:
    """A database someone else made: no testbed mark, one table with a row."""
    server_sql(vendor, f"CREATE DATABASE {name}")
    if vendor == "postgresql":
        import psycopg

        db = _server_settings(vendor)
        with psycopg.connect(
            host=db["HOST"],
            port=db["PORT"],
            user=db["USER"],
            dbname=name,
            autocommit=True,
        ) as conn:
            conn.execute("CREATE TABLE precious (id int)")
            conn.execute("INSERT INTO precious VALUES (1)")
    else:
        server_sql(vendor, f"CREATE TABLE `{name}`.precious (id int)")
        server_sql(vendor, f"INSERT INTO `{name}`.precious VALUES (1)")


class Project:
    """tests/project (or another project) in a temporary directory, run with
    the database names ``name`` derives (``TESTBED_DBNAME``)."""

    def __init__(self, root: Path, vendor: str, name: str) -> None:
        self.root = root
        self.vendor = vendor
        self.name = name
        self.env = {
            **os.environ,
            "TESTBED_ENGINE": vendor,
            "TESTBED_DBNAME": name,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)

    @classmethod
    def copy(
        cls, root: Path, vendor: str, name: str, source: Path = PROJECT
    ) -> Project:
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("__pycache__"))
        return cls(root, vendor, name)

    def run(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """``python *args`` in the project directory."""
        result = subprocess.run(
            [sys.executable, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def manage(
        self, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run("manage.py", *args, check=check)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``python *args``, running in the background."""
        return subprocess.Popen(
            [sys.executable, *args],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def test(self, *labels: str) -> subprocess.CompletedProcess[str]:
        return self.manage("test", "--noinput", *(labels or ("inner",)), check=False)

    def server(self, sql: str) -> None:
        server_sql(self.vendor, sql)

    def databases(self) -> list[str]:
        return databases_containing(self.vendor, self.name)

    def drop_everything(self) -> None:
        drop_databases_containing(self.vendor, self.name)
