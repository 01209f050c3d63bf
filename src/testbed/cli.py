"""The ``testbed`` command: see, clean up and build what testbed keeps.

    testbed status [--json]            what testbed owns, in use or stale
    testbed clean [--dry-run] [--all]  drop the stale ones
    testbed build [NAME ...]           build or refresh templates ahead of a run

Each reads the project's Django settings (``--settings`` or
``DJANGO_SETTINGS_MODULE``), imported only once the arguments are parsed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from testbed._errors import TestbedError

_NO_SETTINGS = (
    "testbed: no Django settings. Pass --settings (e.g. --settings mysite.settings) "
    "or set DJANGO_SETTINGS_MODULE."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _setup_django(args)
        result: int = args.run(args)
        return result
    except _Failure as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except TestbedError as exc:
        # A server that cannot be reached, a setting to fix: one line.
        print(f"testbed: {exc}", file=sys.stderr)
        return 1


class _Failure(Exception):
    """An error the user can fix; printed without a traceback."""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--settings",
        help="the Django settings module (default: $DJANGO_SETTINGS_MODULE)",
    )
    common.add_argument(
        "--pythonpath",
        default=".",
        help="a directory to add to the import path (default: the current one)",
    )
    common.add_argument(
        "--database",
        action="append",
        metavar="ALIAS",
        help="only this DATABASES alias (repeatable; default: all)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    parser = argparse.ArgumentParser(
        prog="testbed",
        description="See, clean up and build the databases django-testbed keeps.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status",
        parents=[common],
        help="list the test databases and templates testbed owns",
        description="List the test databases, templates and clones testbed owns, "
        "with engine, size, fingerprint, age, and whether each is in use or stale.",
    )
    status.set_defaults(run=_status)

    clean = commands.add_parser(
        "clean",
        parents=[common],
        help="drop the stale ones",
        description="Drop the stale databases testbed owns: out-of-date templates "
        "and test databases, incomplete builds, clones whose process has ended. "
        "Databases in use, and anything testbed did not create, are left alone.",
    )
    clean.add_argument(
        "--dry-run", action="store_true", help="say what would be dropped; drop nothing"
    )
    clean.add_argument(
        "--all",
        action="store_true",
        help="drop everything testbed owns that is not in use, current or not",
    )
    clean.set_defaults(run=_clean)

    build = commands.add_parser(
        "build",
        parents=[common],
        help="build or refresh templates ahead of a run",
        description="Build each alias's schema template and the named templates "
        "(default: every template configured), reusing what is current.",
    )
    build.add_argument("names", nargs="*", metavar="NAME", help="a template name")
    build.add_argument(
        "--nomigrations",
        action="store_true",
        help="build schemas from models, as pytest-django's --nomigrations does",
    )
    build.set_defaults(run=_build)
    return parser


def _setup_django(args: argparse.Namespace) -> None:
    path = os.path.abspath(args.pythonpath)
    if path not in sys.path:
        sys.path.insert(0, path)
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise _Failure(_NO_SETTINGS)
    import django

    try:
        django.setup()
    except ImportError as exc:
        raise _Failure(
            f"testbed: cannot import settings {os.environ['DJANGO_SETTINGS_MODULE']!r}: "
            f"{exc}. Check --settings and --pythonpath."
        ) from exc
    from testbed._config import snapshot_databases

    snapshot_databases()


def _aliases(args: argparse.Namespace) -> list[str] | None:
    from django.db import connections

    for alias in args.database or ():
        if alias not in connections.settings:
            known = ", ".join(connections.settings)
            raise _Failure(
                f"testbed: --database {alias!r} is not in DATABASES (aliases: {known})."
            )
    return list(args.database) if args.database else None


def _size(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"


def _state(entry: Any) -> str:
    if entry.in_use:
        return f"in use ({entry.reason})"
    if entry.stale:
        return f"stale: {entry.reason}"
    return "current"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    )


def _status(args: argparse.Namespace) -> int:
    from testbed._inventory import inventory

    entries = [entry for entry, _ in inventory(_aliases(args))]
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return 0
    if not entries:
        print("testbed owns no databases for these settings.")
        return 0
    rows = [["ALIAS", "ENGINE", "KIND", "NAME", "SIZE", "FINGERPRINT", "AGE", "STATE"]]
    for e in entries:
        rows.append(
            [
                e.alias,
                e.vendor,
                e.kind,
                e.name,
                _size(e.size_bytes),
                e.fingerprint,
                _age(e.age_seconds),
                _state(e),
            ]
        )
    print(_table(rows))
    stale = sum(e.stale for e in entries)
    print(
        f"\n{len(entries)} database(s), {stale} stale; `testbed clean` drops the stale ones."
    )
    return 0


def _clean(args: argparse.Namespace) -> int:
    from testbed._inventory import drop, inventory

    chosen = [
        (entry, engine)
        for entry, engine in inventory(_aliases(args))
        if not entry.in_use and (entry.stale or args.all)
    ]
    dropped, failed = [], []
    for entry, engine in chosen:
        if args.dry_run:
            dropped.append(entry)
            continue
        try:
            drop(entry, engine)
        except TestbedError as exc:
            failed.append((entry, str(exc)))
        else:
            dropped.append(entry)
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "dropped": [e.to_dict() for e in dropped],
                    "failed": [{**e.to_dict(), "error": why} for e, why in failed],
                },
                indent=2,
            )
        )
    else:
        verb = "would drop" if args.dry_run else "dropped"
        for entry in dropped:
            why = "" if not entry.stale else f" ({entry.reason})"
            print(f"{verb} {entry.kind} {entry.name}{why}")
        for entry, why in failed:
            print(f"could not drop {entry.name}: {why}", file=sys.stderr)
        total = _size(sum(e.size_bytes or 0 for e in dropped))
        if args.dry_run:
            print(f"{len(dropped)} database(s), {total}, would be dropped.")
        else:
            print(f"{len(dropped)} database(s) dropped, {total}.")
    return 1 if failed else 0


def _build(args: argparse.Namespace) -> int:
    from testbed import _clones, _config, _stats, _templates

    if args.nomigrations:
        from django.apps import apps
        from django.conf import settings

        settings.MIGRATION_MODULES = {c.label: None for c in apps.get_app_configs()}
    _stats.echo = not args.json
    names = args.names or list(_config.templates())
    try:
        from testbed._inventory import schema_aliases

        for alias in _aliases(args) or schema_aliases():
            _templates.template(_templates.schema_spec(alias))
        _templates.ensure_templates(names)
    except TestbedError as exc:
        raise _Failure(f"testbed: {exc}") from exc
    finally:
        _clones.drop_working_clones()
    stats = _stats.stats
    if args.json:
        print(json.dumps(stats.to_dict(), indent=2))
    else:
        print(stats.summary())
    return 0
