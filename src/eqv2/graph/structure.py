"""The one record type for a labelled structure, :class:`Structure`, and its conversions to ASE.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eqv2.graph.errors import DataError, where

__all__ = [
    "ENERGY_ALIASES",
    "FORCES_ALIASES",
    "LABELS",
    "STRESS_ALIASES",
    "Structure",
    "from_atoms",
    "to_atoms",
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


def _as_stress(value: Any, label: str) -> np.ndarray:
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
            self.stress = _as_stress(self.stress, where(self.label()))
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
        self.targets = {k: _as_target(v) for k, v in self.targets.items()}

    def __len__(self) -> int:
        return len(self.numbers)

    def label(self) -> str:
        """``"file, structure i"`` from ``info`` (used to prefix error messages)."""
        src = self.info.get("source", "<structure>")
        idx = self.info.get("index")
        return where(src, idx)

    def formula(self) -> str:
        """The chemical formula (ASE's Hill order), e.g. ``"CH4"``."""
        return _formula(self.numbers)

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
                    f"data, pass the key it is stored under (e.g. {name}_key='REF_{name}'), or "
                    f"stop requiring it (e.g. set its loss coefficient to 0)."
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
    def from_atoms(cls, atoms: Any, **kwargs: Any) -> Structure:
        """See :func:`from_atoms`."""
        return from_atoms(atoms, **kwargs)


def _as_target(value: Any) -> float | np.ndarray:
    """A scalar target as a float, anything else as a float64 array."""
    arr = np.asarray(value, dtype=np.float64)
    return float(arr) if arr.ndim == 0 else arr


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


def _lookup(
    atoms: Any, key: str, aliases: tuple[str, ...], default: str, per_atom: bool
) -> Any | None:
    """Find a label: for each candidate key, ``info``/``arrays`` first, then calculator results.

    ``info``/``arrays`` win over the calculator because keys there are what the user named
    (e.g. ``REF_energy``), while calculator results may be a model's predictions.
    """
    keys = (key, *aliases) if key == default else (key,)
    results = {}
    if atoms.calc is not None:
        results = getattr(atoms.calc, "results", {}) or {}
    for k in keys:
        store = atoms.arrays if per_atom else atoms.info
        if k in store:
            return store[k]
        if per_atom and k in atoms.info:  # some writers put per-atom arrays in info
            return atoms.info[k]
        if k in results:
            return results[k]
    return None


def from_atoms(
    atoms: Any,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    source: str | None = None,
    index: int | None = None,
    info: Mapping[str, Any] | None = None,
    targets: Mapping[str, str] | None = None,
) -> Structure:
    """Convert an ``ase.Atoms`` to a :class:`Structure`.

    ``targets`` maps extra target names to the key they are stored under (looked up in
    ``atoms.info``, then ``atoms.arrays``, then calculator results); absent ones are skipped, so
    ``Structure.validate(require=...)`` reports them.

    Label lookup order, for each label: the given key in ``atoms.info`` (energy, stress) or
    ``atoms.arrays`` (forces), then the same key among the attached calculator's results. With
    the default key only, aliases are tried next in the same way: energy ``REF_energy`` (never
    ``free_energy``: in QM9 files it is the Gibbs energy); forces ``REF_forces``, ``force``;
    stress ``REF_stress``.

    Fixed atoms come from ``FixAtoms`` constraints (other constraints are ignored) or, when
    there are none, from an extxyz ``move_mask`` array (``False`` = fixed); tags from
    ``atoms.get_tags()``. ``info`` gets the scalar entries of ``atoms.info`` plus ``source``,
    ``index`` and ``name`` (chemical formula when the file gives none). A ``virial`` is not
    converted to stress (its sign and volume conventions vary between codes): convert it first
    and store it under ``stress_key``.
    """
    from ase.constraints import FixAtoms

    n = len(atoms)
    fixed = np.zeros(n, dtype=bool)
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            fixed[c.get_indices()] = True
    if not atoms.constraints and "move_mask" in atoms.arrays:
        mm = np.asarray(atoms.arrays["move_mask"])
        fixed = ~(mm.reshape(n, -1).astype(bool).any(axis=1))
    meta: dict[str, Any] = {}
    targets = dict(targets or {})
    skip = {energy_key, stress_key, forces_key, *ENERGY_ALIASES, *STRESS_ALIASES}
    skip |= set(targets.values())
    for k, v in atoms.info.items():
        if k in skip:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, (bool, int, float, str)):
            meta[k] = v
    if info:
        meta.update(info)
    if source is not None:
        meta["source"] = str(source)
    if index is not None:
        meta["index"] = int(index)
    if "name" not in meta:
        meta["name"] = _formula(atoms.numbers)
    label = where(meta.get("source", "<atoms>"), meta.get("index"))
    energy = _lookup(atoms, energy_key, ENERGY_ALIASES, "energy", per_atom=False)
    forces = _lookup(atoms, forces_key, FORCES_ALIASES, "forces", per_atom=True)
    stress = _lookup(atoms, stress_key, STRESS_ALIASES, "stress", per_atom=False)
    if energy is not None:
        try:
            energy = float(np.asarray(energy, dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError) as exc:
            raise DataError(
                f"{label}: field 'energy' ({energy_key!r}) is {energy!r}, not a number. "
                "Fix: store the total energy in eV as a number."
            ) from exc
    found: dict[str, Any] = {}
    calc_results = (getattr(atoms.calc, "results", None) or {}) if atoms.calc is not None else {}
    for name, key in targets.items():
        for store in (atoms.info, atoms.arrays, calc_results):
            if key in store:
                found[name] = store[key]
                break
    return Structure(
        targets=found,
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=np.array(atoms.cell.array, dtype=np.float64),
        pbc=atoms.pbc.copy(),
        energy=energy,
        forces=None if forces is None else np.array(forces, dtype=np.float64),
        stress=None if stress is None else _as_stress(stress, label),
        tags=atoms.get_tags().copy(),
        fixed=fixed,
        info=meta,
    )


def to_atoms(s: Structure) -> Any:
    """Convert a :class:`Structure` to ``ase.Atoms``.

    Labels go to a ``SinglePointCalculator`` (stress as 6 Voigt values when symmetric, as ASE
    expects, else the full 3x3), fixed atoms to one ``FixAtoms``, tags via ``set_tags`` and
    ``info`` to ``atoms.info``. :func:`from_atoms` inverts it exactly.
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.constraints import FixAtoms

    atoms = Atoms(numbers=s.numbers, positions=s.positions, cell=s.cell, pbc=s.pbc)
    atoms.set_tags(s.tags)
    if s.fixed.any():
        atoms.set_constraint(FixAtoms(indices=np.flatnonzero(s.fixed)))
    atoms.info.update(s.info)
    results: dict[str, Any] = {}
    if s.energy is not None:
        results["energy"] = s.energy
    if s.forces is not None:
        results["forces"] = s.forces.copy()
    if s.stress is not None:
        st = s.stress
        if np.array_equal(st, st.T):
            results["stress"] = np.array(
                [st[0, 0], st[1, 1], st[2, 2], st[1, 2], st[0, 2], st[0, 1]]
            )
        else:
            results["stress"] = st.copy()
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    for name, value in s.targets.items():
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == len(s):
            atoms.arrays[name] = value.copy()
        else:
            atoms.info[name] = value
    return atoms


def _formula(numbers: np.ndarray) -> str:
    """ASE's chemical formula, or a plain list of Z when some Z is not a known element."""
    from ase.symbols import Symbols

    numbers = np.asarray(numbers)
    if numbers.size and (numbers.min() < 0 or numbers.max() > MAX_Z):
        return (
            "Z=" + ",".join(str(int(z)) for z in numbers[:8]) + ("..." if len(numbers) > 8 else "")
        )
    return Symbols(numbers).get_chemical_formula()
