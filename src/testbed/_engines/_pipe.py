"""Piping one command-line client into another: ``pg_dump | psql``,
``mysqldump | mysql``."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True)
class Exited:
    """How one side of a pipe ended."""

    code: int
    # What it wrote to stderr, decoded and stripped.
    errors: str


def pipe(
    dump: list[str],
    load: list[str],
    *,
    dump_env: Mapping[str, str] | None = None,
    load_env: Mapping[str, str] | None = None,
) -> tuple[Exited, Exited]:
    """Run ``dump | load`` until both have ended; ``*_env`` add to the
    environment."""
    # Errors go to files: draining two pipes one after the other could block
    # a process on a full one.
    with tempfile.TemporaryFile() as dump_err, tempfile.TemporaryFile() as load_err:
        with (
            subprocess.Popen(
                dump, stdout=subprocess.PIPE, stderr=dump_err, env=_environ(dump_env)
            ) as dumper,
            subprocess.Popen(
                load,
                stdin=dumper.stdout,
                stdout=subprocess.DEVNULL,
                stderr=load_err,
                env=_environ(load_env),
            ) as loader,
        ):
            assert dumper.stdout is not None
            # The loader must be the pipe's only reader, so the dumper gets
            # SIGPIPE if the loader stops.
            dumper.stdout.close()
        return (
            Exited(dumper.returncode, _read(dump_err)),
            Exited(loader.returncode, _read(load_err)),
        )


def _environ(extra: Mapping[str, str] | None) -> dict[str, str] | None:
    return {**os.environ, **extra} if extra else None


def _read(stream: IO[bytes]) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace").strip()
