"""Putting a scope (a class, a test, a block) on template clones."""

from __future__ import annotations

from collections.abc import Sequence

from testbed import _switch, _templates
from testbed._config import ConfigurationError, template


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


class Activation:
    """Aliases pointed at this process's clones of some templates."""

    def __init__(self, names: Sequence[str], *, reload: bool) -> None:
        self.names = tuple(names)
        self.reload = reload
        self._clones: list[_templates.WorkingClone] = []
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
                clone = _templates.working_clone(spec)
                if self.reload:
                    _templates.prepare_restores(clone)
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
            _templates.restore(clone)

    def stop(self) -> None:
        while self._saved:
            _switch.restore(self._saved.pop())
        self.aliases.clear()
        self._clones.clear()
