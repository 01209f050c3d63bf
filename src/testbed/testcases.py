"""Test cases and the decorator that put Django tests on template databases.

django-ttdb's API, on current Django:

- ``use_template_database(name, reload_after_test=True)`` decorates a test
  class or a test method, or is used as a context manager;
- ``TemplateDBTestCase``, ``TemplateDBTransactionTestCase`` and
  ``TemplateDBLiveServerTestCase`` take ``template_database`` and
  ``reload_after_test`` class attributes.

And django-shareddb's: ``LiveServerTestCase`` and
``StaticLiveServerTestCase``, Django's with ``TestCase`` semantics: the live
server shares the test's connections (``testbed._live_testcases``).

A class is pointed at its clones before ``setUpClass`` opens its
transactions, so class fixtures and ``setUpTestData`` land in the clone.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, overload

from django.test import LiveServerTestCase as DjangoLiveServerTestCase
from django.test import TestCase, TransactionTestCase

from testbed._activation import (
    METHOD_TEMPLATES,
    Activation,
    teardown_without_flush,
    template_names,
)
from testbed._config import snapshot_databases
from testbed._live_testcases import LiveServerTestCase, StaticLiveServerTestCase
from testbed._sharing import on_shared_engine

__all__ = [
    "LiveServerTestCase",
    "StaticLiveServerTestCase",
    "TemplateDBLiveServerTestCase",
    "TemplateDBTestCase",
    "TemplateDBTransactionTestCase",
    "use_template_database",
]

_T = TypeVar("_T")
_INSTALLED = "_testbed_installed"


def _rolls_back(klass: type[Any]) -> bool:
    # _databases_support_transactions is private Django API, not in the stubs.
    return issubclass(klass, TestCase) and bool(
        klass._databases_support_transactions()  # type: ignore[attr-defined]
    )


def _class_templates(klass: type[Any]) -> tuple[str, ...]:
    return template_names(
        getattr(klass, "template_database", None),
        where=f"{klass.__qualname__}.template_database",
    )


def _class_reload(klass: type[Any]) -> bool:
    value = getattr(klass, "reload_after_test", None)
    if value is None:
        return not _rolls_back(klass)
    return bool(value)


def _method_of(test: Any) -> _TemplateMethod | None:
    found = type(test).__dict__.get(test._testMethodName)
    if found is None:
        found = getattr(type(test), test._testMethodName, None)
    return found if isinstance(found, _TemplateMethod) else None


def _end_class_activation(cls: type[Any], activation: Activation) -> None:
    cls._testbed_activation = None
    try:
        if activation.reload and issubclass(cls, DjangoLiveServerTestCase):
            activation.restore()  # once per class, as django-ttdb did
    finally:
        activation.stop()


def _install(klass: type[Any]) -> None:
    """Hook ``klass`` (once per hierarchy) so templates apply to its tests."""
    if getattr(klass, _INSTALLED, False):
        return
    set_up_class = klass.setUpClass.__func__
    call = klass.__call__
    debug = klass.debug
    fixture_teardown = klass._fixture_teardown

    def setUpClass(cls: type[Any]) -> None:
        names = _class_templates(cls)
        cls._testbed_activation = None
        if names:
            activation = Activation(
                names, reload=_class_reload(cls) and not _rolls_back(cls)
            )
            activation.start()
            cls._testbed_activation = activation
            # Class cleanups run last-in first-out, after tearDownClass: this
            # one, added before Django adds its own, runs after all of them,
            # while Django's still find the aliases as they left them.
            cls.addClassCleanup(_end_class_activation, cls, activation)
        set_up_class(cls)

    def _run_on_method_templates(self: Any, run: Callable[[], _T]) -> _T:
        method = _method_of(self)
        if method is None:
            return run()
        reload = method.reload_after_test and not _rolls_back(type(self))
        activation = Activation(method.names, reload=reload)
        activation.start()
        self._testbed_method_activation = activation
        try:
            return run()
        finally:
            self._testbed_method_activation = None
            try:
                if reload:
                    activation.restore()
            finally:
                activation.stop()

    def __call__(self: Any, result: Any = None) -> Any:
        return _run_on_method_templates(self, lambda: call(self, result))

    def debug_(self: Any) -> None:
        _run_on_method_templates(self, lambda: debug(self))

    def _fixture_teardown(self: Any) -> None:
        cls = type(self)
        class_activation: Activation | None = getattr(cls, "_testbed_activation", None)
        method_activation = getattr(self, "_testbed_method_activation", None)
        served: set[str] = set()
        for activation in (class_activation, method_activation):
            if activation is not None:
                served |= activation.aliases
        if not served or _rolls_back(cls):
            fixture_teardown(self)
            return
        # Template aliases are restored (or kept), never flushed.
        if (
            class_activation is not None
            and class_activation.reload
            and not issubclass(cls, DjangoLiveServerTestCase)
        ):
            class_activation.restore()
        teardown_without_flush(self, served, fixture_teardown)

    klass.setUpClass = classmethod(setUpClass)
    klass.__call__ = __call__
    klass.debug = debug_
    klass._fixture_teardown = _fixture_teardown
    setattr(klass, _INSTALLED, True)


class _TemplateMethod:
    """A test method that runs on template clones (from setUp to tearDown)."""

    def __init__(
        self, func: Callable[..., Any], names: tuple[str, ...], reload_after_test: bool
    ) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.names = names
        setattr(self, METHOD_TEMPLATES, names)
        self.reload_after_test = reload_after_test

    def __set_name__(self, owner: type, name: str) -> None:
        if not issubclass(owner, TransactionTestCase):
            raise TypeError(
                "use_template_database() can only decorate methods of "
                "django.test.TransactionTestCase subclasses (TestCase, "
                f"TransactionTestCase, LiveServerTestCase), not of {owner.__qualname__}."
            )
        _install(owner)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self.func, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


class use_template_database:
    """Run tests on clones of template databases.

    As a class decorator (on ``TestCase``, ``TransactionTestCase`` or
    ``LiveServerTestCase`` subclasses), a test-method decorator, or a
    context manager::

        @use_template_database("integration")
        class OrderTests(TestCase): ...

        with use_template_database("integration", reload_after_test=False):
            ...

    ``reload_after_test`` brings the clone back to the template's state
    after each transactional test (after each class for live-server tests,
    and when the ``with`` block ends). ``TestCase`` tests roll back instead.
    """

    def __init__(self, *names: str, reload_after_test: bool = True) -> None:
        self.names = template_names(names or None, where="use_template_database()")
        if not self.names:
            raise TypeError("use_template_database() needs at least one template name.")
        self.reload_after_test = reload_after_test
        self._activation: Activation | None = None

    @overload
    def __call__(self, target: type[_T]) -> type[_T]: ...

    @overload
    def __call__(self, target: Callable[..., Any]) -> Callable[..., Any]: ...

    def __call__(self, target: Any) -> Any:
        if isinstance(target, type):
            if not issubclass(target, TransactionTestCase):
                raise TypeError(
                    "use_template_database() can only decorate "
                    "django.test.TransactionTestCase subclasses (TestCase, "
                    "TransactionTestCase, LiveServerTestCase) or their test "
                    f"methods, not {target.__qualname__}."
                )
            _install(target)
            setattr(target, "template_database", self.names)  # noqa: B010
            setattr(target, "reload_after_test", self.reload_after_test)  # noqa: B010
            return target
        if callable(target):
            return _TemplateMethod(target, self.names, self.reload_after_test)
        raise TypeError(
            "use_template_database() decorates test classes and test methods, "
            f"not {type(target).__name__} objects."
        )

    def __enter__(self) -> None:
        if self._activation is not None:
            raise RuntimeError("This use_template_database() block is already active.")
        self._activation = Activation(self.names, reload=self.reload_after_test)
        self._activation.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        activation, self._activation = self._activation, None
        assert activation is not None
        try:
            if activation.reload:
                activation.restore()
        finally:
            activation.stop()


class TemplateDBTestCase(TestCase):
    """``TestCase`` on clones of ``template_database``: class data and every
    test roll back, so the clone keeps the template's state."""

    template_database: str | Sequence[str] | None = None
    reload_after_test: bool = False


class TemplateDBTransactionTestCase(TransactionTestCase):
    """``TransactionTestCase`` on clones of ``template_database``. Instead of
    a flush, each test leaves the clone in the template's state (unless
    ``reload_after_test = False``)."""

    template_database: str | Sequence[str] | None = None
    reload_after_test: bool = True


class TemplateDBLiveServerTestCase(LiveServerTestCase):
    """``LiveServerTestCase`` on clones of ``template_database``, which the
    server thread sees too.

    As django-ttdb's, its tests commit and the clone is brought back to the
    template's state once, after the class (unless ``reload_after_test =
    False``). On ``testbed.backends.shared`` it is a ``TestCase`` instead:
    the server shares the test's connection and each test rolls back.
    """

    template_database: str | Sequence[str] | None = None
    reload_after_test: bool = True

    @classmethod
    def _databases_support_transactions(cls) -> bool:
        # False makes TestCase behave as TransactionTestCase.
        return on_shared_engine(cls.databases) and bool(
            super()._databases_support_transactions()  # type: ignore[misc]
        )


# Test modules import this before the runner creates test databases: the
# settings as the project configured them, before any renaming.
snapshot_databases()

for _klass in (
    TemplateDBTestCase,
    TemplateDBTransactionTestCase,
    TemplateDBLiveServerTestCase,
):
    _install(_klass)
