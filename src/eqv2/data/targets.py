"""Target preprocessing: per-element linear energy references and normalisers.

* Linear references (OC22 style): E ≈ Σ_atoms ref[Z], fitted by least squares over the
  training set; the model then learns the residual. Users may also give E0s directly.
* Normalisers: the model predicts (E − refs − mean_E) / std_E and F / std_F; ``predict``
  undoes it (``eqv2.model.Potential``). Stored in every eqv2 checkpoint.
* Named scalar targets (`read_scalar_target`): a per-structure number stored under a key in
  the record's ``targets`` or ``info`` (readers put scalar ``atoms.info`` / ASE-db key-value
  pairs and ``data`` / LMDB fields in ``info``, arrays in ``targets``), or its energy label.
* Displacement targets (`read_displacement_target`): per atom, the minimum-image vector from
  the record's positions to positions stored under a key (OC20 IS2RS's ``pos_relaxed``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from eqv2.data.errors import DataError

__all__ = [
    "NUM_ELEMENTS",
    "RankDeficientFitWarning",
    "composition_matrix",
    "element_reference_array",
    "fit_element_references",
    "fit_normalizers",
    "read_displacement_target",
    "read_isolated_atom_energies",
    "read_scalar_target",
    "reference_energy",
]

NUM_ELEMENTS = 119  # index = atomic number, 0 unused


class RankDeficientFitWarning(UserWarning):
    """The training compositions do not determine every element's reference energy."""


def composition_matrix(numbers: Sequence[np.ndarray]) -> np.ndarray:
    """(structures, 119) counts of each element per structure."""
    out = np.zeros((len(numbers), NUM_ELEMENTS))
    for row, z in enumerate(numbers):
        z = np.asarray(z, dtype=np.int64)
        if z.size and (z.min() < 1 or z.max() >= NUM_ELEMENTS):
            raise ValueError(
                f"Structure {row} has atomic number {int(z.min() if z.min() < 1 else z.max())}; "
                "atomic numbers must be in [1, 118]."
            )
        np.add.at(out[row], z, 1.0)
    return out


def fit_element_references(
    numbers: Sequence[np.ndarray], energies: Sequence[float], ridge: float = 0.0
) -> np.ndarray:
    """Per-element energies (119,) minimising Σ (E − Σ_atoms ref[Z])² (+ ridge·|ref|²).

    Elements absent from the data get 0. With ``ridge=0`` the minimum-norm least-squares
    solution is used, which is unique even when compositions are collinear (e.g. pure slabs of
    one metal of several sizes determine that metal's reference exactly, but two elements that
    always appear in the same ratio share their energy evenly).
    """
    energies = np.asarray(energies, dtype=np.float64)
    if len(energies) != len(numbers):
        raise ValueError(f"{len(numbers)} structures but {len(energies)} energies.")
    if not np.isfinite(energies).all():
        bad = int(np.flatnonzero(~np.isfinite(energies))[0])
        raise ValueError(
            f"Structure {bad} has a non-finite energy ({energies[bad]}); fix or drop it."
        )
    counts = composition_matrix(numbers)
    present = counts.any(axis=0)
    a = counts[:, present]
    if ridge > 0:
        coef = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ energies)
    else:
        coef = np.linalg.lstsq(a, energies, rcond=None)[0]
    _warn_if_underdetermined(a, np.flatnonzero(present), ridge)
    refs = np.zeros(NUM_ELEMENTS)
    refs[present] = coef
    return refs


def _warn_if_underdetermined(a: np.ndarray, elements: np.ndarray, ridge: float) -> None:
    """Warn, naming the elements whose reference the compositions leave undetermined.

    Element k is determined iff its unit vector lies in the row space of ``a``, i.e. every
    null-space vector of ``a`` has a zero k-th component.
    """
    from ase.data import chemical_symbols

    _, sv, vt = np.linalg.svd(a)
    tol = sv.max(initial=0.0) * max(a.shape) * np.finfo(float).eps
    rank = int((sv > tol).sum())
    if rank == a.shape[1]:
        return
    null = vt[rank:]
    free = [chemical_symbols[z] for z, col in zip(elements, null.T, strict=True) if
            np.abs(col).max() > 1e-8]  # fmt: skip
    how = (
        f"ridge regularisation (ridge={ridge:g}) splits their energy"
        if ridge > 0
        else "the minimum-norm least-squares solution was used (it shares their energy out)"
    )
    warnings.warn(
        f"Linear energy references: the training compositions determine only {rank} "
        f"independent combination(s) of {a.shape[1]} elements; the references of "
        f"{', '.join(free)} are not determined individually (one composition, or elements "
        f"that always occur in fixed ratios), so {how}. Total energies of compositions like "
        "the training data are unaffected, other compositions are not. Fix: add structures "
        "that vary these ratios, or give per-element E0s (e.g. from an isolated-atoms file, "
        "eqv2.data.targets.read_isolated_atom_energies).",
        RankDeficientFitWarning,
        stacklevel=3,
    )


def reference_energy(numbers: np.ndarray, references: np.ndarray) -> float:
    """Σ over atoms of ``references[Z]``."""
    return float(np.asarray(references)[np.asarray(numbers, dtype=np.int64)].sum())


def fit_normalizers(
    energies: Sequence[float],
    forces: Sequence[np.ndarray] | None = None,
    numbers: Sequence[np.ndarray] | None = None,
    element_references: np.ndarray | None = None,
) -> dict[str, Mapping[str, float]]:
    """Energy mean/std over structures (after subtracting element references, if given) and
    force std over all components (mean 0, as OC20's configs use)."""
    e = np.asarray(energies, dtype=np.float64)
    if element_references is not None:
        if numbers is None:
            raise ValueError("numbers are needed to subtract element references.")
        e = e - np.array([reference_energy(z, element_references) for z in numbers])
    std_e = float(e.std()) if len(e) > 1 else 1.0
    out: dict[str, Mapping[str, float]] = {
        "energy": {"mean": float(e.mean()), "std": std_e if std_e > 1e-12 else 1.0}
    }
    if forces is not None and len(forces):
        flat = np.concatenate([np.asarray(f, dtype=np.float64).ravel() for f in forces])
        std_f = float(np.sqrt(np.mean(flat**2)))
        out["forces"] = {"mean": 0.0, "std": std_f if std_f > 1e-12 else 1.0}
    return out


def element_reference_array(e0s: Mapping[str | int, float]) -> np.ndarray:
    """Per-element energies ``(119,)`` (zeros elsewhere) from ``{"Cu": -3.7}`` or ``{29: -3.7}``."""
    from ase.data import atomic_numbers

    refs = np.zeros(NUM_ELEMENTS)
    for key, value in e0s.items():
        z = atomic_numbers.get(key) if isinstance(key, str) else int(key)
        if z is None or not 1 <= z < NUM_ELEMENTS:
            raise ValueError(f"E0s: unknown element {key!r}; use symbols like 'Cu' or Z 1..118.")
        refs[z] = float(value)
    return refs


def read_isolated_atom_energies(
    path: str | os.PathLike[str], *, energy_key: str = "energy"
) -> dict[str, float]:
    """Per-element E0s (eV) from a file of isolated-atom calculations, ``{"C": -1029.5, ...}``.

    Follows MACE's convention: frames whose ``config_type`` is ``IsolatedAtom`` are the E0s;
    a file without any ``config_type`` contributes each single-atom frame. Other frames are
    ignored, so a training file with its isolated atoms works too.

    Raises:
        DataError: no isolated atom found, one without an energy, or two different energies
            for one element (naming the file and frames).
    """
    from eqv2.data.readers import read_structures

    frames = read_structures(path, energy_key=energy_key)
    typed = [s for s in frames if "config_type" in s.info]
    chosen = (
        [s for s in typed if s.info["config_type"] == "IsolatedAtom"]
        if typed
        else [s for s in frames if len(s) == 1]
    )
    if not chosen:
        raise DataError(
            f"{path}: no isolated atoms (frames with config_type=IsolatedAtom, or single-atom "
            "frames in a file without config_type). Fix: point at the isolated-atoms file."
        )
    e0s: dict[str, float] = {}
    for s in chosen:
        if len(s) != 1:
            raise DataError(f"{s.label()}: an IsolatedAtom frame has {len(s)} atoms, not 1.")
        if s.energy is None:
            raise DataError(
                f"{s.label()}: isolated atom without an energy under {energy_key!r}. Fix: pass "
                "the key it is stored under (energy_key=...)."
            )
        symbol = s.formula()
        if symbol in e0s and e0s[symbol] != s.energy:
            raise DataError(
                f"{s.label()}: a second isolated {symbol} atom with energy {s.energy} eV "
                f"(another has {e0s[symbol]} eV). Fix: keep one E0 per element."
            )
        e0s[symbol] = s.energy
    return e0s


def _numeric_keys(structure: Any) -> list[str]:
    keys = [k for k, v in structure.targets.items() if np.size(v) == 1]
    keys += [k for k, v in structure.info.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)
             and k not in ("index", "id")]  # fmt: skip
    return sorted(set(keys) | ({"energy"} if structure.energy is not None else set()))


def read_scalar_target(structure: Any, key: str, scale: float = 1.0, name: str = "") -> float:
    """The per-structure scalar stored under ``key`` in ``structure`` (an
    `eqv2.data.Structure`), times ``scale``: looked up in ``targets``, then ``info``; the key
    ``energy`` also finds the energy label.

    Raises:
        DataError: the key is absent or not one finite number, naming the record (file and
            index), the key, the keys the record has, and the fix.
    """
    label = structure.label()
    what = f"target {name!r} (key {key!r})" if name and name != key else f"target {key!r}"
    value: Any = None
    if key in structure.targets:
        value = structure.targets[key]
    elif key in structure.info and not isinstance(structure.info[key], (bool, str)):
        value = structure.info[key]
    elif key == "energy":
        value = structure.energy
    if value is None:
        have = ", ".join(_numeric_keys(structure)) or "none"
        raise DataError(
            f"{label}: {what} is absent. Numeric per-structure keys of this record: {have}. "
            "Fix: label every record with it, drop the records without it, or point the target "
            f"at the key it is stored under (outputs: {{{name or key}: {{key: ...}}}})."
        )
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1 or not np.isfinite(arr).all():
        raise DataError(
            f"{label}: {what} is {value!r}; expected one finite number. Fix: store a scalar "
            "per structure under this key (per-atom or vector labels are not scalar targets)."
        )
    return float(arr.reshape(-1)[0]) * scale


def read_displacement_target(
    structure: Any, key: str = "pos_relaxed", name: str = ""
) -> np.ndarray:
    """``(N, 3)`` displacements from ``structure``'s positions to the positions stored under
    ``key`` in its ``targets`` (e.g. the relaxed positions of an IS2RE/IS2RS record), as
    minimum images along its periodic axes (an atom that crossed the cell is not a jump of a
    lattice vector).

    Raises:
        DataError: the key is absent or not one position per atom, naming the record and fix.
    """
    from eqv2.graph.minimum_image import minimum_image

    label = structure.label()
    what = f"target {name!r} (key {key!r})" if name and name != key else f"target {key!r}"
    value = structure.targets.get(key)
    n = len(structure)
    if value is None:
        have = ", ".join(k for k, v in structure.targets.items() if np.shape(v) == (n, 3))
        raise DataError(
            f"{label}: {what} is absent; it needs the relaxed positions per atom. Per-atom "
            f"(N, 3) keys of this record: {have or 'none'}. Fix: store them under this key "
            "(extxyz: an arrays column; OC20 IS2RE LMDB: pos_relaxed) or point the target "
            "at their key."
        )
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n, 3) or not np.isfinite(arr).all():
        raise DataError(
            f"{label}: {what} has shape {arr.shape} (or non-finite values); expected ({n}, 3) "
            "finite positions, one row per atom. Fix: regenerate the relaxed positions."
        )
    return minimum_image(arr - structure.positions, structure.cell, structure.pbc, label)
