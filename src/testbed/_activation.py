"""Putting a scope (a class, a test, a block) on template clones."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from testbed import _clones, _switch
from testbed._config import template
from testbed._settings import ConfigurationError


def template_names(value: str | Sequence[str] | None, *, where: str) -> tuple[str, ...]:
    """``template_database`` as a tuple of names; one name or several."""
    __tracebackhide__ = True
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):  # type: ignore[redundant-expr]
        raise ConfigurationError(
            f"{where} must be a template name or a sequence of them, not {value!r}."
        )
    return names


# The attribute a use_template_database()-decorated test method carries.
METHOD_TEMPLATES = "_testbed_templates"


def method_templates(test: Any) -> tuple[str, ...]:
    """The templates a unittest test's method is decorated with, if any."""
    klass, name = type(test), getattr(test, "_testMethodName", None)
    if name is None:
        return ()
    found = klass.__dict__.get(name)
    if found is None:
        found = getattr(klass, name, None)
    return tuple(getattr(found, METHOD_TEMPLATES, ()))


class Activation:
    """Aliases pointed at this process's clones of some templates."""

    def __init__(self, names: Sequence[str], *, reload: bool) -> None:
        self.names = tuple(names)
        self.reload = reload
        self._clones: list[_clones.WorkingClone] = []
        self._saved: list[_switch._Saved] = []
        self.aliases: set[str] = set()

    def start(self) -> None:
        specs = [template(name) for name in self.names]
        served: dict[str, str] = {}
        for spec in specs:
            for alias in spec.aliases:
                if alias in served:
                    raise ConfigurationError(
                        f"Templates {served[alias]!r} and {spec.name!r} both "
                        f"serve database alias {alias!r}; use one template per "
                        "alias in a test."
                    )
                served[alias] = spec.name
        try:
            for spec in specs:
                clone = _clones.working_clone(spec)
                if self.reload:
                    _clones.prepare_restores(clone)
                self._clones.append(clone)
                for alias in spec.aliases:
                    for target in (alias, *_switch.mirrors_of(alias)):
                        self._saved.append(_switch.point(target, clone.settings))
                        self.aliases.add(target)
        except BaseException:
            self.stop()
            raise

    def restore(self) -> None:
        """Bring every clone back to its template's state."""
        for alias in self.aliases:
            _switch.close(alias)
        for clone in self._clones:
            _clones.restore(clone)

    def stop(self) -> None:
        while self._saved:
            _switch.restore(self._saved.pop())
        self.aliases.clear()
        self._clones.clear()


def teardown_without_flush(
    test: Any, aliases: set[str], teardown: Callable[[Any], None]
) -> None:
    """Run a ``TransactionTestCase``'s ``teardown`` (its ``_fixture_teardown``)
    on every database but ``aliases``.

    Template aliases are restored (or kept), never flushed: a flush would
    throw away the data set the template exists to provide.
    """
    all_names = test._databases_names

    def other_names(include_mirrors: bool = True) -> list[str]:
        return [
            a for a in all_names(include_mirrors=include_mirrors) if a not in aliases
        ]

    test._databases_names = other_names
    try:
        teardown(test)
    finally:
        del test._databases_names


@contextmanager
def unflushed(aliases: set[str]) -> Iterator[None]:
    """While active, no ``TransactionTestCase`` flushes ``aliases``.

    For test case classes built by someone else (pytest-django builds one
    per test), which testbed cannot hook one by one.
    """
    from django.test import TransactionTestCase

    if not aliases:
        yield
        return
    original = TransactionTestCase.__dict__["_fixture_teardown"]

    def _fixture_teardown(self: Any) -> None:
        teardown_without_flush(self, aliases, original)

    # Private Django API, absent from the stubs.
    setattr(TransactionTestCase, "_fixture_teardown", _fixture_teardown)  # noqa: B010
    try:
        yield
    finally:
        setattr(TransactionTestCase, "_fixture_teardown", original)  # noqa: B010
