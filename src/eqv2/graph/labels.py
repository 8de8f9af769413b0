"""The vocabulary of a structure's labels: their names, the keys files store them under, and
the conversions every reader and the record share (stress layouts, targets, formulas).

It sits below both :mod:`eqv2.graph.structure` (the record) and :mod:`eqv2.graph.ase_convert`
(the ASE boundary), so the record can offer ``to_atoms``/``from_atoms`` without an import cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eqv2.graph.errors import DataError

__all__ = [
    "ENERGY_ALIASES",
    "FORCES_ALIASES",
    "LABELS",
    "MAX_Z",
    "STRESS_ALIASES",
    "as_stress",
    "as_target",
    "formula_of",
]

#: Labels a reader may be asked to ``require``.
LABELS = ("energy", "forces", "stress")
#: Keys tried after the default key, in this order (only when the caller kept the default key:
#: an explicit key that is absent is an absence, never silently replaced by another quantity).
ENERGY_ALIASES = ("REF_energy",)
FORCES_ALIASES = ("REF_forces", "force")
STRESS_ALIASES = ("REF_stress",)

MAX_Z = 118


def _voigt_to_full(v: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = v
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], dtype=np.float64)


def as_stress(value: Any, label: str) -> np.ndarray:
    """A stress given as (3, 3), 9 values or 6 Voigt values, as the full (3, 3) tensor."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (6,):
        return _voigt_to_full(arr)
    if arr.shape == (9,):
        return arr.reshape(3, 3).copy()
    if arr.shape == (3, 3):
        return arr.copy()
    raise DataError(
        f"{label}: field 'stress' has shape {arr.shape}; expected (3, 3), 9 values or 6 Voigt "
        "values (xx yy zz yz xz xy). Fix: store the stress tensor in one of these layouts."
    )


def as_target(value: Any) -> float | np.ndarray:
    """A scalar target as a float, anything else as a float64 array."""
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr


def formula_of(numbers: np.ndarray) -> str:
    """ASE's chemical formula, or a plain list of Z when some Z is not a known element."""
    from ase.symbols import Symbols

    numbers = np.asarray(numbers)
    if numbers.size and (numbers.min() < 0 or numbers.max() > MAX_Z):
        return (
            "Z=" + ",".join(str(int(z)) for z in numbers[:8]) + ("..." if len(numbers) > 8 else "")
        )
    return Symbols(numbers).get_chemical_formula()
