"""Formatting and running shared by the benchmark suites."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def engine_label(result: dict[str, Any]) -> str:
    engine = result["engine"]
    if engine == "sqlite":
        return "SQLite (file)"
    if engine == "sqlite-memory":
        return "SQLite (memory)"
    if engine == "postgresql":
        return "PostgreSQL"
    server = result.get("versions", {}).get("server", "")
    return "MariaDB" if "mariadb" in server.lower() else "MySQL"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def ratio(value: float, base: float) -> str:
    """``value / base`` as "3.1×" or "0.42×", or as "1/40" below a tenth."""
    if base <= 0 or value <= 0:
        return "—"
    r = value / base
    if r >= 10:
        return f"{r:,.0f}×"
    if r >= 0.95:
        return f"{r:.1f}×"
    if r >= 0.1:
        return f"{r:.2f}×"
    return f"1/{base / value:,.0f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def environment(results: list[dict[str, Any]]) -> str:
    versions: dict[str, str] = {}
    for r in results:
        for key, value in r.get("versions", {}).items():
            if key == "server":
                key, value = engine_label(r), server_version(value)
            versions.setdefault(key, value)
    testbed = next(
        (r["testbed"]["version"] for r in results if "version" in r["testbed"]), "?"
    )
    commit = git("rev-parse", "--short", "HEAD")
    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--", "src")
        else ""
    )
    parts = [f"{k} {v}" for k, v in versions.items()]
    return (
        f"testbed {testbed} at {commit}{dirty}; "
        + ", ".join(parts)
        + f"; {os.cpu_count()} CPUs"
    )


def server_version(version: str) -> str:
    """ "15.20" from PostgreSQL's version(), "10.11.19" from MariaDB's."""
    words = version.replace("-", " ").split()
    if words and words[0] == "PostgreSQL":
        return words[1]
    return words[0] if words else version


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def split_choices(value: str, allowed: tuple[str, ...]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in items if v not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})"
        )
    return items


def run_json_worker(
    module: str, args: list[str], timeout: float, *, output_flag: str = "--output"
) -> tuple[Any, str]:
    """Run ``python -m module *args --output FILE`` (or another flag) and read
    the JSON it wrote there: (result, "") or (None, why it failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        command = [sys.executable, "-m", module, *args, output_flag, str(path)]
        try:
            done = subprocess.run(command, cwd=ROOT, timeout=timeout, stdout=sys.stderr)
            failure = f"exit status {done.returncode}" if done.returncode else ""
        except subprocess.TimeoutExpired:
            failure = f"timed out after {timeout:g}s"
        if not failure and path.exists():
            return json.loads(path.read_text()), ""
    return None, failure or "no result written"
