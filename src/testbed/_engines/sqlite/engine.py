"""SQLite: templates are files; clones are files or named shared-cache
memory databases.

Django's own clone copies only the main file, which loses whatever is still
in the ``-wal`` file of a WAL-mode database. Templates here are sealed in
rollback-journal mode, so the main file is the whole database and a plain
file copy is exact; databases testbed does not own are read through the
backup API, which sees the WAL too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from django.db.backends.base.base import BaseDatabaseWrapper

from testbed._engines._base import DatabaseInfo, Engine, EngineError
from testbed._settings import cache_dir, project_cache_dir

_MEMORY_NAME = re.compile(r"^file:([^?]+)\?(.*\b)?mode=memory\b")
_SIDECAR = ".testbed"
_COMPANIONS = ("-wal", "-shm", "-journal")

# Named shared-cache memory databases live while one connection is open:
# these keepers hold them for the process, with their marks.
_keepers: dict[str, sqlite3.Connection] = {}
_memory_marks: dict[str, str] = {}


def _memory_name(name: str) -> str | None:
    match = _MEMORY_NAME.match(name)
    return match.group(1) if match else None


def _memory_uri(stem: str) -> str:
    return f"file:{stem}?mode=memory&cache=shared"


class SQLiteEngine(Engine):
    vendor = "sqlite"
    max_name_length: ClassVar[int] = 4096

    def _split_base(self) -> tuple[Path, str, str]:
        """(directory, stem, extension) that derived file names are built from."""
        base = self.base_name
        stem = _memory_name(base)
        if stem is not None or base == ":memory:":
            return project_cache_dir(), stem or f"memorydb_{self.alias}", ".sqlite3"
        path = Path(base)
        return path.parent, path.stem, path.suffix or ".sqlite3"

    def derive_name(self, suffix: str, *, persistent: bool) -> str:
        directory, stem, ext = self._split_base()
        in_memory = _memory_name(self.base_name) is not None
        if in_memory and not persistent:
            return _memory_uri(f"{stem}_{suffix}")
        return str(directory / f"{stem}_{suffix}{ext}")

    def skip_disk_waits_on(self, connection: BaseDatabaseWrapper) -> None:
        if not _memory_name(str(connection.settings_dict["NAME"])):
            connection.connection.execute("PRAGMA synchronous = OFF")

    # --- reading --------------------------------------------------------------

    def exists(self, name: str) -> bool:
        if _memory_name(name):
            return name in _keepers
        return os.path.exists(name)

    def read_mark(self, name: str) -> str | None:
        if _memory_name(name):
            return _memory_marks.get(name)
        try:
            return Path(name + _SIDECAR).read_text()
        except OSError:
            return None

    def list_databases(self, prefix: str) -> list[DatabaseInfo]:
        found: list[DatabaseInfo] = []
        stem = _memory_name(prefix)
        if stem is not None:
            for name in _keepers:
                if (_memory_name(name) or "").startswith(stem):
                    found.append(
                        DatabaseInfo(name, _memory_marks.get(name), None, True)
                    )
            directory = project_cache_dir()
        else:
            path = Path(prefix)
            directory, stem = path.parent, path.name.removesuffix(path.suffix)
        if directory.is_dir():
            for entry in sorted(directory.iterdir()):
                if not entry.name.startswith(stem) or entry.name.endswith(
                    (_SIDECAR, ".lock", *_COMPANIONS)
                ):
                    continue
                found.append(
                    DatabaseInfo(
                        str(entry),
                        self.read_mark(str(entry)),
                        entry.stat().st_size,
                        False,
                    )
                )
        return found

    def server_version(self) -> str:
        return sqlite3.sqlite_version

    def source_state(self, source: dict[str, Any]) -> str:
        states = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(str(source["NAME"]) + suffix)
            except OSError:
                continue
            if suffix and not st.st_size:
                continue  # any reader creates an empty -wal: no content
            states.append(f"{suffix}:{st.st_size}:{st.st_mtime_ns}")
        return ";".join(states)

    # --- creating ---------------------------------------------------------------

    def _refuse_existing(self, name: str) -> None:
        if self.exists(name):
            raise EngineError(f"SQLite database {name} already exists.")

    def _write_sidecar(self, name: str, mark: str) -> None:
        if _memory_name(name):
            _memory_marks[name] = mark
            return
        tmp = Path(f"{name}{_SIDECAR}.tmp")
        tmp.write_text(mark)
        os.replace(tmp, name + _SIDECAR)

    def _new_memory(self, name: str) -> sqlite3.Connection:
        keeper = sqlite3.connect(name, uri=True, check_same_thread=False)
        _keepers[name] = keeper
        return keeper

    def create_empty(self, name: str, mark: str) -> None:
        self._refuse_existing(name)
        # The mark goes first: whatever happens next, the file is known as ours.
        self._write_sidecar(name, mark)
        if _memory_name(name):
            self._new_memory(name)
        else:
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            sqlite3.connect(name).close()

    def write_mark(self, name: str, mark: str) -> None:
        self._write_sidecar(name, mark)

    def seal(self, name: str, mark: str) -> None:
        if _memory_name(name):
            raise EngineError(f"A template must be a file, not {name}.")
        conn = sqlite3.connect(name)
        try:
            # Leaving WAL mode checkpoints the WAL into the main file, which
            # is then the whole database: a file copy of it is exact.
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        finally:
            conn.close()
        if str(mode).lower() != "delete":
            raise EngineError(
                f"Could not take template {name} out of {mode} journal mode; "
                "is another process using it?"
            )
        os.chmod(name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        self._write_sidecar(name, mark)

    def clone(self, template: str, target: str, mark: str) -> None:
        self._refuse_existing(target)
        self._write_sidecar(target, mark)
        if _memory_name(target):
            keeper = self._new_memory(target)
            source = sqlite3.connect(f"file:{template}?mode=ro", uri=True)
            try:
                source.backup(keeper)
            finally:
                source.close()
            return
        tmp = f"{target}.tmp"
        shutil.copyfile(template, tmp)
        os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, target)

    def copy_from(self, source: dict[str, Any], target: str, mark: str) -> None:
        path = str(source["NAME"])
        if _memory_name(path) or path == ":memory:":
            raise EngineError(
                f"Cannot copy in-memory SQLite database {path}: a template "
                "source must be a database file."
            )
        if not os.path.exists(path):
            raise EngineError(f"SQLite database {path} does not exist.")
        self._refuse_existing(target)
        self._write_sidecar(target, mark)
        # mode=ro: the source is only read. The backup API reads a consistent
        # snapshot that includes a WAL-mode source's -wal file.
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if _memory_name(target):
                dst = self._new_memory(target)
                src.backup(dst)
            else:
                dst = sqlite3.connect(target)
                try:
                    src.backup(dst)
                    dst.execute("PRAGMA journal_mode=DELETE")
                finally:
                    dst.close()
        except sqlite3.Error as exc:
            raise EngineError(f"Copying SQLite database {path} failed: {exc}") from exc
        finally:
            src.close()

    # --- destroying ---------------------------------------------------------

    def _drop(self, name: str) -> None:
        if _memory_name(name):
            keeper = _keepers.pop(name, None)
            if keeper is not None:
                keeper.close()
            _memory_marks.pop(name, None)
            return
        for suffix in ("", *_COMPANIONS, _SIDECAR):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name + suffix)

    # --- coordination -------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[None]:
        import filelock

        # In testbed's cache directory, not beside the project's databases:
        # lock files are left in place (removing one races with its users).
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        lock = filelock.FileLock(str(cache_dir() / f"{digest}.lock"))
        try:
            lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise TimeoutError(f"Lock {key!r} not acquired within {timeout}s") from None
        try:
            yield
        finally:
            lock.release()
