"""Deprecated: atomic file writes moved to :mod:`eqv2.safe_io` (removed in eqv2 0.2.0).

Importing a name from here still works and raises a ``DeprecationWarning``.
"""

from eqv2 import safe_io
from eqv2.deprecation import deprecated_module_getattr

__all__ = ["atomic_write_path", "write_json"]  # noqa: F822 (served by __getattr__)

__getattr__ = deprecated_module_getattr(
    "eqv2.atomic", "eqv2.safe_io", {name: getattr(safe_io, name) for name in __all__}
)
