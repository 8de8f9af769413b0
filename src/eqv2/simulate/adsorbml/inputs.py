"""Checking AdsorbML inputs: the clean slab and the adsorbate (with its binding atoms).

Conventions (OC20's): slab atoms carry tag 1 (free surface) or 0 (fixed subsurface); adsorbate
atoms get tag 2 when placed. Fixed atoms are the slab's ``FixAtoms`` constraint or, when the slab
has none, its tag-0 atoms. The surface normal is +z: the slab's in-plane cell vectors must lie in
the xy plane (as ``ase.build`` and OC20 make them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from ase.io import read as ase_read

from eqv2.adsorption import DEFAULT_ADSORBATE_FILE, load_adsorbates, select_adsorbate
from eqv2.adsorption import binding_indices as stored_binding_indices
from eqv2.graph import fixed_mask

__all__ = ["check_slab", "resolve_adsorbate", "slab_fixed_mask"]

SLAB_TAGS = (0, 1)
ADSORBATE_TAG = 2


def _formula(atoms: Atoms) -> str:
    return atoms.get_chemical_formula(empirical=False) or "empty"


def slab_fixed_mask(slab: Atoms) -> np.ndarray:
    """Fixed slab atoms: its ``FixAtoms`` constraint, else (OC20 convention) its tag-0 atoms."""
    if any(isinstance(c, FixAtoms) for c in slab.constraints):
        return fixed_mask(slab)
    return slab.get_tags() == 0


def check_slab(slab: Atoms) -> np.ndarray:
    """Check a clean slab for AdsorbML and return its fixed-atom mask.

    Args:
        slab: periodic in x and y, in-plane cell vectors in the xy plane, tags 0/1 with at least
            one tag-1 (surface) atom, at least one free atom.

    Returns:
        (N,) bool array, True for fixed atoms.

    Raises:
        ValueError: naming the slab (formula), the problem and the fix.
    """
    if not isinstance(slab, Atoms):
        raise ValueError(f"slab must be an ase.Atoms, got {type(slab).__name__}")
    name = f"slab {_formula(slab)}"
    if len(slab) == 0:
        raise ValueError("slab has no atoms")
    tags = slab.get_tags()
    bad = sorted(set(tags.tolist()) - set(SLAB_TAGS))
    if bad:
        hint = " (tag 2 marks adsorbate atoms: pass the clean slab)" if ADSORBATE_TAG in bad else ""
        raise ValueError(
            f"{name}: tags {bad} found; slab atoms must be tagged 1 (free surface) or 0 (fixed "
            f"subsurface){hint}"
        )
    if not (tags == 1).any():
        raise ValueError(
            f"{name} has no tag-1 (surface) atoms: tag the free surface atoms 1 and the fixed "
            "subsurface atoms 0 (OC20 convention), e.g. slab.set_tags(tags) before calling"
        )
    if not (slab.pbc[0] and slab.pbc[1]):
        raise ValueError(f"{name}: pbc is {slab.pbc.tolist()}; a slab must be periodic in x and y")
    cell = slab.cell.array
    if abs(cell[0, 2]) > 1e-6 or abs(cell[1, 2]) > 1e-6 or cell[2, 2] <= 0:
        raise ValueError(
            f"{name}: the in-plane cell vectors must lie in the xy plane and the third point up "
            f"(+z is the surface normal); got cell {np.round(cell, 3).tolist()}"
        )
    fixed = slab_fixed_mask(slab)
    if fixed.all():
        raise ValueError(
            f"{name}: all {len(slab)} atoms are fixed (FixAtoms or tag 0); free the surface "
            "layers so relaxations can move them"
        )
    return fixed


def _select(key: int | str, adsorbate_file: str | os.PathLike) -> Atoms:
    """A copy of the list entry ``key`` (OC20 index or SMILES); errors say what else works."""
    try:
        return select_adsorbate(load_adsorbates(adsorbate_file), key, adsorbate_file).copy()
    except ValueError as exc:
        raise ValueError(f"{exc}; or give a structure file or an Atoms") from None


def resolve_adsorbate(
    spec: str | int | os.PathLike | Atoms,
    *,
    binding_indices: list[int] | None = None,
    adsorbate_file: str | os.PathLike = DEFAULT_ADSORBATE_FILE,
) -> Atoms:
    """The adsorbate as an ``Atoms`` with ``info["binding_indices"]`` (a list of ints).

    Args:
        spec: an OC20 adsorbate SMILES such as ``"*OH"``, its OC20 index, a structure file
            (first image read; e.g. ``.xyz``/``.extxyz``), or an ``Atoms``.
        binding_indices: atoms that bind to the surface; defaults to the entry's or file's
            ``info["binding_indices"]``, else atom 0.
        adsorbate_file: the OC20 adsorbate list (extxyz).

    Raises:
        ValueError: unknown name or index, empty adsorbate, binding index out of range.
    """
    if isinstance(spec, Atoms):
        atoms = spec.copy()
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        atoms = _select(spec, adsorbate_file)
    elif isinstance(spec, (str, os.PathLike)) and Path(spec).is_file():
        atoms = ase_read(spec, index=0)
    elif isinstance(spec, str):
        atoms = _select(spec, adsorbate_file)
    else:
        raise ValueError(f"adsorbate: give a SMILES, an OC20 index, a file or Atoms, not {spec!r}")
    if len(atoms) == 0:
        raise ValueError(f"adsorbate {spec!r} has no atoms")
    if binding_indices is not None:
        binding = np.atleast_1d(np.asarray(binding_indices, dtype=int))
    else:
        binding = stored_binding_indices(atoms)
    if binding.size == 0 or binding.min() < 0 or binding.max() >= len(atoms):
        raise ValueError(
            f"adsorbate {_formula(atoms)}: binding_indices {binding.tolist()} out of range for "
            f"{len(atoms)} atoms (0..{len(atoms) - 1})"
        )
    atoms.info["binding_indices"] = [int(i) for i in binding]
    atoms.info.setdefault("smiles", _formula(atoms))
    atoms.set_tags(np.full(len(atoms), ADSORBATE_TAG))
    atoms.constraints = []
    atoms.pbc = False
    atoms.calc = None
    return atoms
