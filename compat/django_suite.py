"""Django's own test suite, vanilla and with testbed, on each engine; then
the two runs' outcomes compared. ``scripts/django-suite`` runs this.

    scripts/django-suite [--engines E,...] [--variants V,...] [--parallel N]
                         [--results DIR] [--no-install] [APP ...] [-- RUNTESTS-ARGS]

The sdist of the Django installed in the venv is downloaded and extracted
once under ``.compat-cache/``; its ``tests/runtests.py`` runs with our
settings (``compat.django_settings.<engine>``) and a recording runner
(``compat.recording``). Records and raw logs go to
``.compat-cache/results/<django-version>/<engine>-<variant>.{json,log}``
(a custom app list gets a subdirectory of its own, so that it never
overwrites the baselines). Both variants' records, this run's or an
earlier one's, are compared per engine by ``compat.compare``; the exit
status is non-zero if any engine differs beyond the allowlist, or a run
did not finish.

Environment: DJANGO_SUITE_ENGINES, DJANGO_SUITE_VARIANTS, DJANGO_SUITE_APPS
(space- or comma-separated) stand in for the options. PYTHONPATH is kept,
ahead of the repository root, so that ``PYTHONPATH=/elsewhere/src`` runs
another copy of testbed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from compat import compare

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".compat-cache"
ENGINES = ("sqlite", "postgresql", "mysql")
VARIANTS = ("vanilla", "testbed")

# Forty-five apps of Django's tests that lean on the database, and above
# all on what testbed replaces: how test databases are made, cloned for
# --parallel, flushed and restored (TransactionTestCase, serialized_rollback,
# available_apps, LiveServerTestCase, multiple databases, migrations run
# inside tests). Apps that need services this harness does not run (GIS,
# memcached, redis, selenium) are left out.
DEFAULT_APPS = (
    # Test-database lifecycle, transactions and the runner itself.
    "backends",
    "test_runner",
    "test_utils",
    "transactions",
    "transaction_hooks",
    "select_for_update",
    "servers",
    "migration_test_data_persistence",
    "multiple_database",
    "fixtures",
    "fixtures_regress",
    # Schema changes inside tests, which leave objects a flush does not.
    "schema",
    "migrations",
    "migrate_signals",
    "indexes",
    "introspection",
    "inspectdb",
    "constraints",
    # TransactionTestCase and available_apps users.
    "auth_tests",
    "basic",
    "cache",
    "contenttypes_tests",
    "delete_regress",
    "file_storage",
    "get_or_create",
    "handlers",
    "model_fields",
    "model_options",
    "proxy_model_inheritance",
    "serializers",
    "settings_tests",
    "swappable_models",
    "timezones",
    "apps",
    # PostgreSQL's own features (skipped elsewhere): extensions, its
    # fields, its indexes and constraints.
    "postgres_tests",
    # Plain ORM load: many queries, many tables.
    "queries",
    "aggregation",
    "bulk_create",
    "composite_pk",
    "db_functions",
    "delete",
    "expressions",
    "model_inheritance",
    "prefetch_related",
    "sessions_tests",
)

# Packages of the sdist's tests/requirements/*.txt that change what these
# apps run (without them their tests are skipped), by the apps that need
# them; pinned as those files pin them. tblib is always needed: without it
# --parallel cannot send a failure's traceback back to the parent.
REQUIREMENTS = {
    "tblib": None,
    "argon2-cffi": {"auth_tests"},
    "bcrypt": {"auth_tests"},
    # migrations' tests run the black command if it is on PATH.
    "black": {"migrations"},
    "pillow": {"bulk_create", "model_fields", "serializers"},
    "pyyaml": {"composite_pk", "fixtures_regress", "serializers", "timezones"},
    "psycopg-pool": {"backends"},
}


def _split(value: str) -> list[str]:
    return value.replace(",", " ").split()


def _choice(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = _split(value)
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise SystemExit(
            f"{what}: expected some of {', '.join(allowed)}, got {value!r}"
        )
    # In the canonical order, whatever order they were given in.
    return [item for item in allowed if item in chosen]


def django_version() -> str:
    return importlib.metadata.version("django")


def sdist_tests(version: str) -> Path:
    """The sdist's tests directory, downloaded and extracted once."""
    target = CACHE / f"django-{version}"
    tests = target / "tests"
    if (tests / "runtests.py").exists():
        return tests
    CACHE.mkdir(exist_ok=True)
    archives = list(CACHE.glob(f"[Dd]jango-{version}.tar.gz"))
    if not archives:
        print(f"Downloading Django {version}'s sdist", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
             "--no-binary", ":all:", f"django=={version}", "-d", str(CACHE)],
            check=True,
        )  # fmt: skip
        archives = list(CACHE.glob(f"[Dd]jango-{version}.tar.gz"))
    # Extracted beside, then renamed: an interrupted extraction is never
    # taken for a complete one.
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        with tarfile.open(archives[0]) as archive:
            archive.extractall(scratch, filter="data")
        (extracted,) = Path(scratch).iterdir()
        shutil.rmtree(target, ignore_errors=True)
        extracted.rename(target)
    return tests


def ensure_requirements(tests: Path, apps: list[str]) -> None:
    """Install, as the sdist pins them, the packages the chosen apps need
    and the venv lacks."""
    from packaging.requirements import Requirement

    wanted = {
        name
        for name, users in REQUIREMENTS.items()
        if users is None or users & {app.split(".")[0] for app in apps}
    }
    missing = []
    for path in sorted((tests / "requirements").glob("*.txt")):
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            requirement = Requirement(line)
            name = requirement.name.lower()
            if name not in wanted or (
                requirement.marker and not requirement.marker.evaluate()
            ):
                continue
            try:
                installed = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                installed = None
            if installed is None or not requirement.specifier.contains(
                installed, prereleases=True
            ):
                missing.append(str(requirement).split(";")[0])
    if missing:
        print(f"Installing {' '.join(missing)}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", *missing], check=True
        )


def _mysql_server() -> dict[str, str]:
    return {
        "host": os.environ.get("TESTBED_MYSQL_HOST", "127.0.0.1"),
        "port": os.environ.get("TESTBED_MYSQL_PORT", "3306"),
        "user": os.environ.get("TESTBED_MYSQL_USER", "root"),
        "password": os.environ.get("TESTBED_MYSQL_PASSWORD", ""),
    }


def server_problem(engine: str) -> str | None:
    """Why ``engine``'s server cannot be used, or None."""
    try:
        if engine == "postgresql":
            import psycopg

            psycopg.connect(
                host=os.environ.get("TESTBED_PG_HOST", "127.0.0.1"),
                port=os.environ.get("TESTBED_PG_PORT", "5432"),
                user=os.environ.get("TESTBED_PG_USER", "root"),
                password=os.environ.get("TESTBED_PG_PASSWORD", ""),
                dbname="postgres",
                connect_timeout=5,
            ).close()
        elif engine == "mysql":
            import MySQLdb

            server = _mysql_server()
            MySQLdb.connect(
                **{**server, "port": int(server["port"])}, connect_timeout=5
            ).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def ensure_mysql_time_zones() -> None:
    """Load the server's named time zones if it has none.

    Django's suite converts with CONVERT_TZ(..., 'Australia/Melbourne'),
    which is NULL on a server whose time zone tables are empty (as a fresh
    MariaDB's are): some twenty timezone and Trunc/Extract tests fail on
    that alone. Django's documentation asks for them to be loaded.
    """
    import MySQLdb

    server = _mysql_server()
    with MySQLdb.connect(**{**server, "port": int(server["port"])}) as db:
        cursor = db.cursor()
        cursor.execute("SELECT COUNT(*) FROM mysql.time_zone_name")
        (loaded,) = cursor.fetchone()
    if loaded:
        return
    tool = shutil.which("mariadb-tzinfo-to-sql") or shutil.which("mysql_tzinfo_to_sql")
    client = shutil.which("mariadb") or shutil.which("mysql")
    zoneinfo = Path("/usr/share/zoneinfo")
    if not (tool and client and zoneinfo.is_dir()):
        print(
            "WARNING: the MySQL server has no time zone tables and this machine "
            "cannot load them (mysql_tzinfo_to_sql, a client, /usr/share/zoneinfo): "
            "Django's time zone tests will fail, vanilla and testbed alike"
        )
        return
    print(f"Loading {zoneinfo} into the MySQL server's time zone tables", flush=True)
    sql = subprocess.run(
        [tool, str(zoneinfo)], capture_output=True, check=True
    ).stdout  # it warns on stderr about files that are not zones
    subprocess.run(
        [
            client,
            "-h",
            server["host"],
            "-P",
            server["port"],
            "-u",
            server["user"],
            "mysql",
        ],
        input=sql,
        env={**os.environ, "MYSQL_PWD": server["password"]},
        check=True,
    )


def run_variant(
    tests: Path,
    engine: str,
    variant: str,
    apps: list[str],
    parallel: int,
    extra: list[str],
    results: Path,
) -> tuple[int, float]:
    """One runtests.py run, its output both shown and logged; returns its
    exit status and wall time."""
    record = results / f"{engine}-{variant}.json"
    log = results / f"{engine}-{variant}.log"
    record.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*filter(None, env.get("PYTHONPATH", "").split(os.pathsep)), str(ROOT)]
    )
    # The venv's scripts first: migrations' tests look for black on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["COMPAT_DJANGO_VARIANT"] = variant
    env["COMPAT_DJANGO_RESULTS"] = str(record)
    command = [
        sys.executable, "runtests.py", "--noinput", f"--parallel={parallel}",
        f"--settings=compat.django_settings.{engine}", *extra, *apps,
    ]  # fmt: skip
    if variant == "testbed":
        # Which copy of testbed runs: the record says so too.
        where = subprocess.run(
            [sys.executable, "-c", "import testbed; print(testbed.__file__)"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        print(f"testbed imported from {where.stdout.strip() or where.stderr.strip()}")
    print(f"== {engine} {variant}: {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    with log.open("w") as out:
        out.write(f"$ cd {tests} && {' '.join(command)}\n")
        out.flush()
        process = subprocess.Popen(
            command, cwd=tests, env=env, text=True, errors="replace",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            out.write(line)
        status = process.wait()
        wall = time.monotonic() - start
        out.write(f"\n== exit status {status}, wall time {wall:.0f} s\n")
    print(f"== {engine} {variant}: exit status {status}, wall time {wall:.0f} s")
    return status, wall


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(
        prog="scripts/django-suite",
        description="Django's own test suite, vanilla and with testbed, compared.",
        epilog="Arguments after -- go to runtests.py.",
    )
    parser.add_argument(
        "--engines",
        default=os.environ.get("DJANGO_SUITE_ENGINES", ",".join(ENGINES)),
        help=f"comma-separated, of {', '.join(ENGINES)} (all by default)",
    )
    parser.add_argument(
        "--variants",
        default=os.environ.get("DJANGO_SUITE_VARIANTS", ",".join(VARIANTS)),
        help="vanilla, testbed or both (the default)",
    )
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--results", type=Path, help="where records and logs go (see above)"
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="do not pip-install the test requirements the apps need",
    )
    parser.add_argument(
        "apps",
        nargs="*",
        help="test labels (apps, modules, tests); DJANGO_SUITE_APPS, else the default 45 apps",
    )
    args = parser.parse_args(argv)
    engines = _choice(args.engines, ENGINES, "--engines")
    variants = _choice(args.variants, VARIANTS, "--variants")
    apps = (
        args.apps
        or _split(os.environ.get("DJANGO_SUITE_APPS", ""))
        or list(DEFAULT_APPS)
    )

    version = django_version()
    results = args.results or CACHE / "results" / version
    if args.results is None and sorted(apps) != sorted(DEFAULT_APPS):
        # Another app list compares only with itself.
        digest = hashlib.sha256(" ".join(sorted(apps)).encode()).hexdigest()[:8]
        results = results / f"apps-{digest}"
    results.mkdir(parents=True, exist_ok=True)
    tests = sdist_tests(version)
    if not args.no_install:
        ensure_requirements(tests, apps)

    status = 0
    walls: list[str] = []
    for engine in engines:
        problem = server_problem(engine)
        if problem:
            print(f"== {engine}: server unreachable ({problem}); not run")
            status = 1
            continue
        if engine == "mysql":
            ensure_mysql_time_zones()
        for variant in variants:
            code, wall = run_variant(
                tests, engine, variant, apps, args.parallel, extra, results
            )
            walls.append(f"{engine} {variant}: {wall:.0f} s (exit status {code})")

    print(f"\nRecords in {results}")
    for line in walls:
        print(f"  {line}")
    allowlist = compare.load_allowlist(compare.DEFAULT_ALLOWLIST)
    for engine in engines:
        records = {v: results / f"{engine}-{v}.json" for v in VARIANTS}
        if not all(path.exists() for path in records.values()):
            made = [v for v in variants if records[v].exists()]
            print(
                f"\n== {engine}: no pair of records to compare ({', '.join(made) or 'none'} made)"
            )
            if set(made) != set(variants):
                status = 1
            continue
        print()
        vanilla = compare.load_record(records["vanilla"])
        testbed = compare.load_record(records["testbed"])
        flaky = recheck(
            tests, engine, vanilla, testbed, allowlist, args.parallel, extra, results
        )
        verdict = compare.report(vanilla, testbed, allowlist, engine, flaky=flaky)
        status = status or verdict
    return status


def recheck(
    tests: Path,
    engine: str,
    vanilla: dict[str, Any],
    testbed: dict[str, Any],
    allowlist: list[compare.Allowed],
    parallel: int,
    extra: list[str],
    results: Path,
) -> dict[str, str]:
    """Run the apps of the tests whose outcomes differ again, under both
    runners; those that agree this time differed by chance (a timing test
    on a busy machine), the others are reported as differences.

    A whole app, not the test alone: a difference that comes from what an
    earlier test of the app left behind shows again.
    """
    allowed = {a.test for a in allowlist if a.engine in (None, engine)}
    differing = {
        test
        for group in compare.differences(vanilla, testbed).values()
        for test in group
        if test not in allowed
    }
    if not differing or not (vanilla.get("complete") and testbed.get("complete")):
        return {}
    apps = sorted({test.split(".")[0] for test in differing})
    where = results / "recheck"
    where.mkdir(exist_ok=True)
    print(
        f"== {engine}: {len(differing)} difference(s); running {' '.join(apps)} again"
    )
    for variant in VARIANTS:
        run_variant(tests, engine, variant, apps, parallel, extra, where)
    again = {
        v: compare.load_record(where / f"{engine}-{v}.json")["tests"] for v in VARIANTS
    }
    agreed = {}
    for test in sorted(differing):
        first = again["vanilla"].get(test, {}).get("outcome")
        second = again["testbed"].get(test, {}).get("outcome")
        if first is not None and first == second:
            agreed[test] = f"{first} under both"
    return agreed


if __name__ == "__main__":
    sys.exit(main())
