"""Deprecated alias of :mod:`eqv2.fairchem` (and :mod:`eqv2.model.state_dict`).

``eqv2.model.fairchem`` was split into the :mod:`eqv2.fairchem` package (keys, config, read,
write); weight validation moved to :mod:`eqv2.model.state_dict`. This module re-exports the old
public names for one release and warns once, on import.
"""

from __future__ import annotations

import warnings

from eqv2 import fairchem as _package
from eqv2.fairchem import *  # noqa: F403 - the alias re-exports the package's public names
from eqv2.model.state_dict import StateDictMismatchError, validate_state_dict

__all__ = [*_package.__all__, "StateDictMismatchError", "validate_state_dict"]

warnings.warn(
    "eqv2.model.fairchem is deprecated and will be removed in the next release: import from "
    "eqv2.fairchem (validate_state_dict and StateDictMismatchError: eqv2.model.state_dict).",
    DeprecationWarning,
    stacklevel=2,
)
