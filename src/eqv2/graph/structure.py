"""The one record type for a labelled structure, :class:`Structure`, and its ASE conversions.

It lives in the graph layer so that ``eqv2.graph.batch_structures`` consumes it directly, and
every reader in ``eqv2.data`` produces it (``eqv2.data.records`` re-exports it).

A ``Structure`` is a plain dataclass of numpy arrays rather than an ``ase.Atoms``: it is cheap to
create in worker processes, it serialises without pickle, and its labels have one fixed place
(``energy``/``forces``/``stress``) instead of ASE's several (``info``, ``arrays``, calculator
results, under user-chosen keys). Conventions:

- ``numbers (N,)`` int64 atomic numbers in 1..118; ``positions (N, 3)`` float64 Å;
  ``cell (3, 3)`` float64, lattice vectors as rows (zeros on open axes are allowed);
  ``pbc (3,)`` bool.
- ``energy`` float eV or ``None``; ``forces (N, 3)`` float64 eV/Å or ``None``;
  ``stress (3, 3)`` float64 eV/Å³ or ``None``, the full tensor with ASE's sign (tension positive).
  Voigt input (ASE order xx yy zz yz xz xy) is expanded to the full tensor.
- ``tags (N,)`` int64 (OC20: 0 fixed subsurface, 1 surface, 2 adsorbate; zeros when unknown);
  ``fixed (N,)`` bool, True for atoms held fixed (no force loss on them by default).
- ``targets``: further named labels (e.g. QM9 properties): a float for a per-structure
  scalar, an array whose first axis has one row per atom for a per-atom target, or any other
  float64 array for a per-structure tensor. Names must differ from the fixed labels.
- ``info``: a flat dict of JSON-compatible scalars. Readers set ``name``, ``source`` (file) and
  ``index`` (position in that file), and copy scalar metadata such as OC20's ``sid``/``fid``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqv2.graph.ase_convert import atoms_fields, to_atoms
from eqv2.graph.errors import DataError, where
from eqv2.graph.labels import (
    ENERGY_ALIASES,
    FORCES_ALIASES,
    LABELS,
    MAX_Z,
    STRESS_ALIASES,
    as_stress,
    as_target,
    formula_of,
)

__all__ = [
    "ENERGY_ALIASES",
    "FORCES_ALIASES",
    "LABELS",
    "STRESS_ALIASES",
    "Structure",
    "as_stress",
    "as_target",
    "formula_of",
    "from_atoms",
    "to_atoms",
]


@dataclass(eq=False)
class Structure:
    """One atomic structure with optional DFT labels (see the module docstring for units)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    tags: np.ndarray | None = None
    fixed: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, float | np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise dtypes/shapes once here so every consumer can rely on them; shape errors
        # are reported by validate() with the file and record named.
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)
        n = len(self.numbers)
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.cell = np.asarray(self.cell, dtype=np.float64)
        pbc = np.asarray(self.pbc, dtype=bool)
        self.pbc = np.broadcast_to(pbc, (3,)).copy() if pbc.ndim == 0 else pbc
        if self.energy is not None:
            self.energy = float(np.asarray(self.energy, dtype=np.float64).reshape(-1)[0])
        if self.forces is not None:
            self.forces = np.asarray(self.forces, dtype=np.float64)
        if self.stress is not None:
            self.stress = as_stress(self.stress, where(self.label()))
        self.tags = (
            np.zeros(n, dtype=np.int64)
            if self.tags is None
            else np.asarray(self.tags, dtype=np.int64).reshape(-1)
        )
        self.fixed = (
            np.zeros(n, dtype=bool)
            if self.fixed is None
            else np.asarray(self.fixed, dtype=bool).reshape(-1)
        )
        self.targets = {k: as_target(v) for k, v in self.targets.items()}

    def __len__(self) -> int:
        return len(self.numbers)

    def label(self) -> str:
        """``"file, structure i"`` from ``info`` (used to prefix error messages)."""
        src = self.info.get("source", "<structure>")
        idx = self.info.get("index")
        return where(src, idx)

    def formula(self) -> str:
        """The chemical formula (ASE's Hill order), e.g. ``"CH4"``."""
        return formula_of(self.numbers)

    def has(self, name: str) -> bool:
        """Whether the label ``name`` (energy, forces, stress or a ``targets`` key) is present."""
        if name in LABELS:
            return getattr(self, name) is not None
        return name in self.targets

    def validate(self, require: Iterable[str] = ()) -> Structure:
        """Check shapes, element range and finiteness; return ``self`` for chaining.

        Raises:
            DataError: naming the file, record and field, and the fix.
        """
        lab = self.label()
        n = len(self.numbers)
        if n == 0:
            raise DataError(f"{lab}: has no atoms. Fix: remove the empty structure.")
        bad = np.flatnonzero((self.numbers < 1) | (self.numbers > MAX_Z))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{lab}: field 'numbers' has an atom with Z={int(self.numbers[i])} (atom {i}); "
                f"atomic numbers must be 1..{MAX_Z}. Fix: replace dummy or unknown elements."
            )
        _check(lab, "positions", self.positions, (n, 3))
        _check(lab, "cell", self.cell, (3, 3))
        if self.pbc.shape != (3,):
            raise DataError(f"{lab}: field 'pbc' has shape {self.pbc.shape}; expected (3,).")
        if self.energy is not None and not math.isfinite(self.energy):
            raise DataError(
                f"{lab}: field 'energy' is {self.energy}. Fix: drop or relabel this structure."
            )
        if self.forces is not None:
            _check(lab, "forces", self.forces, (n, 3))
        if self.stress is not None:
            _check(lab, "stress", self.stress, (3, 3))
        for name in ("tags", "fixed"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise DataError(
                    f"{lab}: field '{name}' has shape {arr.shape}; expected ({n},), one per atom."
                )
        for name, value in self.targets.items():
            if name in LABELS:
                raise DataError(
                    f"{lab}: target {name!r} clashes with the fixed label of that name. Fix: "
                    f"store it in the field '{name}' instead of in targets."
                )
            if isinstance(value, float):
                if not math.isfinite(value):
                    raise DataError(f"{lab}: target {name!r} is {value}. Fix: drop or relabel it.")
            elif not np.all(np.isfinite(value)):
                raise DataError(f"{lab}: target {name!r} contains NaN or inf. Fix: recompute it.")
        for name in require:
            if not self.has(name):
                raise DataError(
                    f"{lab}: field '{name}' is required but absent. Fix: add the label to the "
                    f"data, or pass the key it is stored under (e.g. data.{name}_key=REF_{name}); "
                    "to train a per-structure target without energy and forces, select it with "
                    "data.target=<key> (eqv2 train ... --set data.target=gap)."
                )
        return self

    def copy(self) -> Structure:
        """A deep copy."""
        return Structure(
            numbers=self.numbers.copy(),
            positions=self.positions.copy(),
            cell=self.cell.copy(),
            pbc=self.pbc.copy(),
            energy=self.energy,
            forces=None if self.forces is None else self.forces.copy(),
            stress=None if self.stress is None else self.stress.copy(),
            tags=self.tags.copy(),
            fixed=self.fixed.copy(),
            info=dict(self.info),
            targets={
                k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in self.targets.items()
            },
        )

    def equals(self, other: Structure) -> bool:
        """Exact equality of every array, label and ``info`` (NaN never equals)."""

        def same(a: Any, b: Any) -> bool:
            if a is None or b is None:
                return a is None and b is None
            a, b = np.asarray(a), np.asarray(b)
            return a.shape == b.shape and bool(np.array_equal(a, b))

        return (
            all(
                same(getattr(self, k), getattr(other, k))
                for k in (
                    "numbers",
                    "positions",
                    "cell",
                    "pbc",
                    "forces",
                    "stress",
                    "tags",
                    "fixed",
                )
            )
            and self.energy == other.energy
            and self.info == other.info
            and self.targets.keys() == other.targets.keys()
            and all(same(v, other.targets[k]) for k, v in self.targets.items())
        )

    def to_atoms(self) -> Any:
        """This structure as an ``ase.Atoms`` (see :func:`to_atoms`)."""
        return to_atoms(self)

    @classmethod
    def from_atoms(cls, atoms: Any, **options: Any) -> Structure:
        """See :func:`from_atoms`."""
        return cls(**atoms_fields(atoms, **options))


def from_atoms(atoms: Any, **options: Any) -> Structure:
    """Convert an ``ase.Atoms`` to a :class:`Structure`; :func:`to_atoms` inverts it exactly.

    ``options`` are those of :func:`eqv2.graph.ase_convert.atoms_fields` (label keys
    ``energy_key``/``forces_key``/``stress_key``, ``source``, ``index``, ``info``, ``targets``),
    which also says where each label is looked up and what becomes metadata or targets.
    """
    return Structure(**atoms_fields(atoms, **options))


def _check(lab: str, name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise DataError(
            f"{lab}: field '{name}' has shape {arr.shape}; expected {shape}. Fix: the file's "
            f"'{name}' entry does not match the structure (one row of 3 per atom for per-atom "
            "fields); regenerate or correct it."
        )
    if not np.all(np.isfinite(arr)):
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DataError(
            f"{lab}: field '{name}' contains NaN or inf (row {row}). Fix: drop or recompute "
            "this structure."
        )
