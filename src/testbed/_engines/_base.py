"""The interface every vendor clone engine implements.

Engines are the bottom layer: they know SQL and files, nothing about tests.
They never decide whether an operation is safe. The core (``testbed._safety``)
does that, and is the only caller of the destructive ``_drop`` and
``_reset_tracked`` methods.

Names passed to an engine are physical database names (a file path on
SQLite). Ownership marks are opaque strings to an engine: it only stores and
reads them, next to or inside the database, such that the mark of a database
can be read without modifying it.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db.backends.base.base import BaseDatabaseWrapper

from testbed._errors import TestbedError


class EngineError(TestbedError):
    """A database operation failed; the message says which and why."""


@dataclass(frozen=True)
class DatabaseInfo:
    """One database an engine found, with its ownership mark if it has one."""

    name: str
    mark: str | None
    size_bytes: int | None
    in_use: bool


class Engine(abc.ABC):
    """Clone operations for one database server (or SQLite directory).

    ``settings`` is a Django ``DATABASES`` entry, already normalised by
    Django, whose ``NAME`` is the *test* database name of its alias.
    """

    vendor: ClassVar[str]
    # The longest database name the server accepts.
    max_name_length: ClassVar[int]
    # Whether making several clones at once beats making them one by one
    # (measured: PostgreSQL's clones overlap their waits on the disk; a
    # MariaDB clone already copies its tables over several connections).
    parallel_clones: ClassVar[bool] = False

    def __init__(self, settings: dict[str, Any], alias: str) -> None:
        self.settings = settings
        self.alias = alias

    # --- naming -------------------------------------------------------------

    @property
    def base_name(self) -> str:
        """The name every database testbed creates for this alias starts from."""
        return str(self.settings["NAME"])

    @abc.abstractmethod
    def derive_name(self, suffix: str, *, persistent: bool) -> str:
        """A database name made of ``base_name`` and ``suffix``.

        ``suffix`` is made of ``[a-z0-9_]`` only. ``persistent`` names must
        survive the process (templates); SQLite in-memory bases put those in
        a file, and others in a named shared-cache memory database.
        """

    def settings_for(self, name: str) -> dict[str, Any]:
        """A copy of ``settings`` that connects to database ``name``."""
        new = {**self.settings, "NAME": name}
        new["TEST"] = {**self.settings.get("TEST", {}), "NAME": name}
        return new

    def connect(self, name: str) -> BaseDatabaseWrapper:
        """A new, private Django connection to database ``name``."""
        return private_connection(self.settings_for(name), self.alias)

    # --- reading (never modifies anything) ----------------------------------

    @abc.abstractmethod
    def exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def read_mark(self, name: str) -> str | None:
        """The ownership mark of ``name``; ``None`` if it has none or is absent."""

    @abc.abstractmethod
    def list_databases(self, prefix: str) -> list[DatabaseInfo]:
        """Every database whose name starts with ``prefix``, marked or not."""

    def server_version(self) -> str:
        """A string that changes when the server's version does."""
        return ""

    def source_state(self, source: dict[str, Any]) -> str:
        """A cheap string that changes when the content of the database
        ``source`` (a settings dict, not testbed's) changes; read-only."""
        return ""

    # --- creating (new names only: each raises if ``name`` exists) ----------

    @abc.abstractmethod
    def create_empty(self, name: str, mark: str) -> None:
        """Create an empty database with the test settings' charset/collation."""

    @abc.abstractmethod
    def write_mark(self, name: str, mark: str) -> None:
        """Replace the mark of a database testbed created."""

    @abc.abstractmethod
    def seal(self, name: str, mark: str) -> None:
        """Finish a template: write its (complete) mark and make it read-only.

        After this, no connection to ``name`` may be opened, except the
        engine's own reads of it as a clone source.
        """

    @abc.abstractmethod
    def clone(self, template: str, target: str, mark: str) -> None:
        """Create ``target`` as a copy of the sealed template ``template``."""

    @abc.abstractmethod
    def copy_from(self, source: dict[str, Any], target: str, mark: str) -> None:
        """Create ``target`` as a copy of a database testbed does not own.

        ``source`` is a full settings dict. The source is only read: no
        write, no ALTER, no session terminated, and nothing left behind in it.
        """

    def skip_disk_waits(self, name: str) -> None:  # noqa: B027 - a setting per connection elsewhere
        """Let commits to the test database ``name`` (testbed's own) return
        before the disk has them: a test database needs no durability, and
        transactional tests commit all the time."""

    def skip_disk_waits_on(self, connection: BaseDatabaseWrapper) -> None:  # noqa: B027
        """The same, for engines where it is a setting of each connection."""

    def keep_baseline(self, name: str) -> None:  # noqa: B027 - most engines read the template
        """Keep, inside the schema template ``name`` before it is sealed, what
        restoring its migrated state needs (``TableReset.restore_baseline``);
        engines that can read the template from a clone need nothing."""

    def baseline_source(self, template: str) -> str:
        """What ``TableReset.restore_baseline`` reads a clone of the schema
        template ``template`` back from."""
        return template

    # --- per-test restore ----------------------------------------------------

    # Why the last ``prepare_tracking`` returned False, and what would let it
    # track: the core names it in the session summary.
    tracking_refused: str = "this engine restores by making a fresh clone"

    def prepare_tracking(self, name: str, template: str) -> bool:
        """Make ``name`` (a fresh clone of ``template``) record what changes.

        Returns False if this engine cannot restore changed tables (saying
        why in ``tracking_refused``), in which case the core makes a fresh
        clone instead.
        """
        return False

    def _reset_tracked(self, name: str, template: str) -> bool:
        """Bring ``name`` back to ``template``'s state, restoring only what
        changed since ``prepare_tracking`` or the last reset.

        Returns False, having changed nothing, when it cannot be sure the
        result would equal the template (for example after DDL); the core
        then replaces the database with a fresh clone.
        """
        raise NotImplementedError

    # --- destroying (only ever called by testbed._safety) -------------------

    @abc.abstractmethod
    def _drop(self, name: str) -> None:
        """Drop ``name`` (and its mark), ending sessions on it if needed."""

    # --- coordination --------------------------------------------------------

    @abc.abstractmethod
    def lock(self, key: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """A cross-process lock named ``key``, released if the holder dies.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """

    def close(self) -> None:  # noqa: B027 - engines without connections keep it
        """Release any connection the engine holds."""


# Set on every connection testbed makes for itself.
_PRIVATE = "_testbed_private"
_silencing = threading.Lock()
_silenced = False


def private_connection(settings: dict[str, Any], alias: str) -> BaseDatabaseWrapper:
    """A Django connection of testbed's own to the database ``settings`` name.

    It is never in ``django.db.connections`` and no ``connection_created``
    receiver hears of it: the project's receivers (``django.contrib.postgres``
    registering its type handlers, say) look the connection up by alias, and
    routers and lookups must never meet testbed's maintenance connections.
    """
    from testbed._engines import backend_of

    _silence_private_connections()
    wrapper: BaseDatabaseWrapper = backend_of(settings).DatabaseWrapper(
        settings, f"__testbed_{alias}"
    )
    setattr(wrapper, _PRIVATE, True)
    return wrapper


def _silence_private_connections() -> None:
    """Make ``connection_created`` skip testbed's own connections.

    Django sends the signal from ``connect()`` with no way to opt out, so the
    signal's ``send`` is wrapped once: it is unchanged for every other
    connection.
    """
    global _silenced
    with _silencing:
        if _silenced:
            return
        from django.db.backends.signals import connection_created

        send = connection_created.send

        def send_unless_private(sender: Any, **named: Any) -> list[tuple[Any, Any]]:
            if getattr(named.get("connection"), _PRIVATE, False):
                return []
            return send(sender, **named)

        connection_created.send = send_unless_private  # type: ignore[method-assign]
        _silenced = True


@contextlib.contextmanager
def closing_connection(wrapper: BaseDatabaseWrapper) -> Iterator[BaseDatabaseWrapper]:
    try:
        yield wrapper
    finally:
        wrapper.close()


def shortened_name(base: str, suffix: str, limit: int, *, count_bytes: bool) -> str:
    """``{base}_{suffix}``, shortened to ``limit`` if it is longer.

    A shortened name keeps ``suffix`` whole and ends with a hash of the full
    name, so that two long names cannot end up the same. ``count_bytes``:
    the server counts the limit in UTF-8 bytes rather than characters.
    """
    full = f"{base}_{suffix}"

    def size(text: str) -> int:
        return len(text.encode()) if count_bytes else len(text)

    def cut(text: str, length: int) -> str:
        if count_bytes:
            return text.encode()[:length].decode(errors="ignore")
        return text[:length]

    if size(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    tail = f"_{suffix}_{digest}"
    room = limit - size(tail)
    if room < 8:
        return cut(full, limit - 9) + f"_{digest}"
    return cut(base, room) + tail


def like_prefix(prefix: str) -> str:
    """A ``LIKE`` pattern for names that start with ``prefix``; use it with
    ``ESCAPE '!'``."""
    # '!' rather than '\' as the escape: a backslash means something else
    # under MySQL's sql_mode NO_BACKSLASH_ESCAPES.
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
