"""The shared engine's ``DatabaseWrapper``: the inner engine's, plus sharing.

``DatabaseWrapper(settings_dict, alias)`` builds an instance of a subclass
of the inner engine's wrapper (one class per inner engine), so vendor,
features, operations, creation and introspection are the inner engine's.
The subclass only watches its stack of atomic blocks: when a ``TestCase``
transaction opens on the connection (Django marks its blocks
``_from_testcase``), the connection is shared with every thread
(``testbed._sharing``) until that transaction ends.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend

from testbed import _sharing
from testbed.backends.shared import SHARED_ENGINE as ENGINE


def _from_testcase(block: Any) -> bool:
    return bool(getattr(block, "_from_testcase", False))


class _Blocks(list[Any]):
    """A connection's stack of atomic blocks, telling it of pushes and pops."""

    def __init__(self, conn: SharedDatabaseWrapperMixin, items: Any = ()) -> None:
        super().__init__(items)
        self._conn = conn

    def append(self, block: Any) -> None:
        super().append(block)
        self._conn._testbed_pushed(block)

    def pop(self, index: Any = -1) -> Any:
        block = super().pop(index)
        self._conn._testbed_popped(block)
        return block


class SharedDatabaseWrapperMixin:
    """Shares the connection with every thread while a TestCase transaction is open."""

    testbed_inner_engine: str = ""
    _testbed_sharing: _sharing.Sharing | None = None
    _testbed_sharing_block: Any = None

    @property
    def atomic_blocks(self) -> _Blocks:
        return self.__dict__["_testbed_atomic_blocks"]  # type: ignore[no-any-return]

    @atomic_blocks.setter
    def atomic_blocks(self, value: Any) -> None:
        # Django assigns a fresh list in __init__() and connect().
        self.__dict__["_testbed_atomic_blocks"] = _Blocks(self, value)

    def _testbed_pushed(self, block: Any) -> None:
        if self._testbed_sharing is None and _from_testcase(block):
            sharing = _sharing.Sharing([self])  # type: ignore[list-item]
            sharing.start()
            self._testbed_sharing = sharing
            self._testbed_sharing_block = block

    def _testbed_popped(self, block: Any) -> None:
        if block is self._testbed_sharing_block and self._testbed_sharing is not None:
            sharing, self._testbed_sharing = self._testbed_sharing, None
            self._testbed_sharing_block = None
            sharing.stop()


_classes: dict[str, type[BaseDatabaseWrapper]] = {}
_classes_lock = threading.Lock()


def wrapper_class(
    inner: str, *, where: str = "INNER_ENGINE"
) -> type[BaseDatabaseWrapper]:
    """The shared engine's wrapper class around backend ``inner``."""
    with _classes_lock:
        if inner in _classes:
            return _classes[inner]
        if inner == ENGINE:
            raise ImproperlyConfigured(
                f"{where} is {ENGINE!r} itself; set it to the Django backend "
                "the shared engine wraps, such as 'django.db.backends.postgresql'."
            )
        try:
            backend = load_backend(inner)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(
                f"{where} is {inner!r}, which isn't an available database backend "
                "(see the error above). Set it to the Django backend the shared "
                "engine wraps, such as 'django.db.backends.postgresql'."
            ) from exc
        inner_class: type[BaseDatabaseWrapper] = backend.DatabaseWrapper
        cls = type(
            "DatabaseWrapper",
            (SharedDatabaseWrapperMixin, inner_class),
            {"__module__": __name__, "testbed_inner_engine": inner},
        )
        _classes[inner] = cls
        return cls


def inner_engine(settings_dict: dict[str, Any] | None, alias: str | None) -> str:
    """The backend an entry of the shared engine wraps.

    An entry rebuilt from ENGINE alone (Django's own test suite does so)
    has no INNER_ENGINE: the one DATABASES configures for the same alias,
    or for every shared alias, serves.
    """
    inner = (settings_dict or {}).get("INNER_ENGINE")
    if inner:
        return str(inner)
    from django.conf import settings

    databases: dict[str, Any] = settings.DATABASES
    own = databases.get(alias or "", {})
    if own.get("ENGINE") == ENGINE and own.get("INNER_ENGINE"):
        return str(own["INNER_ENGINE"])
    configured = sorted(
        {
            str(entry["INNER_ENGINE"])
            for entry in databases.values()
            if entry.get("ENGINE") == ENGINE and entry.get("INNER_ENGINE")
        }
    )
    if len(configured) == 1:
        return configured[0]
    where = f"DATABASES[{alias!r}]" if alias else "A DATABASES entry"
    problem = (
        f"and DATABASES wraps several ({', '.join(map(repr, configured))}), so "
        "testbed cannot tell which one"
        if configured
        else "and no DATABASES entry names one"
    )
    raise ImproperlyConfigured(
        f"{where} uses ENGINE {ENGINE!r} without INNER_ENGINE, {problem}. Set "
        "INNER_ENGINE to the Django backend it wraps, such as "
        "'django.db.backends.postgresql', or build DATABASES with "
        "testbed.patch_databases(DATABASES)."
    )


class _Factory(type):
    """Makes ``DatabaseWrapper`` build the inner engine's wrapper per entry."""

    def __call__(
        cls, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS
    ) -> Any:
        inner = inner_engine(settings_dict, alias)
        where = f"DATABASES[{alias!r}]['INNER_ENGINE']"
        return wrapper_class(inner, where=where)(settings_dict, alias)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, SharedDatabaseWrapperMixin)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, SharedDatabaseWrapperMixin)

    def __getattr__(cls, name: str) -> Any:
        # Class attributes (vendor, display_name, client_class...) are the
        # inner engine's, when DATABASES wraps just one.
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            inner = inner_engine(None, None)
        except ImproperlyConfigured as exc:
            raise AttributeError(str(exc)) from exc
        return getattr(wrapper_class(inner), name)


class DatabaseWrapper(metaclass=_Factory):
    """``DatabaseWrapper(settings_dict, alias)``: a connection of the inner
    engine (``settings_dict["INNER_ENGINE"]``) that is shared with every
    thread while a ``TestCase`` transaction is open on it."""
