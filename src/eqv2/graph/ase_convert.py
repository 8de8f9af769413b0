"""The ASE boundary of :class:`~eqv2.graph.structure.Structure`: ``ase.Atoms`` to a record's
fields and a record to ``ase.Atoms``.

``atoms_fields`` finds the labels under their keys and aliases, keeps scalar ``info`` entries
as metadata and other numeric entries as ``targets``; ``to_atoms`` inverts it. Users call
:func:`eqv2.graph.from_atoms` / :func:`eqv2.graph.to_atoms` (or the ``Structure`` methods):
this module builds no record itself, so the record can import it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from eqv2.graph.errors import DataError, where
from eqv2.graph.labels import (
    ENERGY_ALIASES,
    FORCES_ALIASES,
    LABELS,
    STRESS_ALIASES,
    as_stress,
    formula_of,
)

if TYPE_CHECKING:
    from eqv2.graph.structure import Structure

__all__ = ["atoms_fields", "numeric_target", "to_atoms"]

#: Arrays ASE itself keeps on an ``Atoms`` (inputs, not labels), and extxyz's fixed-atom mask.
_ATOMS_ARRAYS = frozenset(
    ("numbers", "positions", "momenta", "masses", "initial_magmoms", "initial_charges", "tags")
) | {"move_mask"}


def numeric_target(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array when it is a non-empty numeric (integer or float, not bool)
    array of at least one dimension, else ``None`` (strings, objects, scalars, bools)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.ndim == 0 or arr.size == 0 or arr.dtype.kind not in "iuf":
        return None
    return arr.astype(np.float64)


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


def atoms_fields(
    atoms: Any,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    source: str | None = None,
    index: int | None = None,
    info: Mapping[str, Any] | None = None,
    targets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The :class:`~eqv2.graph.structure.Structure` fields of an ``ase.Atoms``: its constructor
    keyword arguments (``Structure(**atoms_fields(atoms))`` is ``from_atoms(atoms)``).

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
    ``index`` and ``name`` (chemical formula when the file gives none). Numeric array entries
    of ``atoms.info`` (per-structure vectors, 3x3 tensors), of ``atoms.arrays`` (per-atom
    ``(N,)``/``(N, k)`` arrays other than ASE's own and the labels) and of the calculator's
    results (e.g. a ``dipole`` or ``charges`` that ASE's extxyz reader puts there) become
    ``targets`` under their key, unless ``targets`` names them otherwise. A ``virial`` is not
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
        meta["name"] = formula_of(atoms.numbers)
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
    reserved = skip | {forces_key, *FORCES_ALIASES, *LABELS, *found} | _ATOMS_ARRAYS
    for store in (atoms.info, atoms.arrays, calc_results):
        for key, value in store.items():
            arr = None if key in reserved or key in meta else numeric_target(value)
            if arr is not None:
                found.setdefault(key, arr)
    return dict(
        targets=found,
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=np.array(atoms.cell.array, dtype=np.float64),
        pbc=atoms.pbc.copy(),
        energy=energy,
        forces=None if forces is None else np.array(forces, dtype=np.float64),
        stress=None if stress is None else as_stress(stress, label),
        tags=atoms.get_tags().copy(),
        fixed=fixed,
        info=meta,
    )


def to_atoms(s: Structure) -> Any:
    """Convert a :class:`Structure` to ``ase.Atoms``.

    Labels go to a ``SinglePointCalculator`` (stress as 6 Voigt values when symmetric, as ASE
    expects, else the full 3x3), fixed atoms to one ``FixAtoms``, tags via ``set_tags`` and
    ``info`` to ``atoms.info``. :func:`~eqv2.graph.structure.from_atoms` inverts it exactly.
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
