"""Deprecated aliases: old names that keep working for one release and warn when used.

A renamed function keeps its old name as ``old = deprecated_alias(new, "module.old")``;
a moved module keeps its old file with ``__getattr__ = deprecated_module_getattr(...)``. Both
raise a :class:`DeprecationWarning` that names the replacement at the caller's line.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["REMOVAL_VERSION", "deprecated_alias", "deprecated_module_getattr"]

#: The release in which the deprecated aliases are removed.
REMOVAL_VERSION = "0.2.0"

F = TypeVar("F", bound=Callable[..., Any])


def _message(old: str, new: str) -> str:
    return f"{old} is deprecated and will be removed in eqv2 {REMOVAL_VERSION}; use {new} instead."


def deprecated_alias(func: F, old: str) -> F:
    """``func`` under its former name ``old``: same behaviour, a ``DeprecationWarning`` per call.

    Args:
        func: the function under its new name.
        old: the former dotted name (e.g. ``"eqv2.simulate.relax.make_optimizer"``), for the
            warning.
    """
    new = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(_message(old, new), DeprecationWarning, stacklevel=2)
        return func(*args, **kwargs)

    alias.__doc__ = f"Deprecated alias of :func:`{new}` (removed in {REMOVAL_VERSION})."
    return alias  # type: ignore[return-value]


def deprecated_module_getattr(
    old_module: str, new_module: str, names: Mapping[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``names`` from a moved module, warning on each access.

    ``from old_module import name`` and ``old_module.name`` both warn and return the object.

    Args:
        old_module: the deprecated module's dotted name.
        new_module: where the names live now.
        names: the names the old module provided, mapped to their objects.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warnings.warn(
            _message(f"{old_module}.{name}", f"{new_module}.{name}"),
            DeprecationWarning,
            stacklevel=2,
        )
        return names[name]

    return __getattr__
