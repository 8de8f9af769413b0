"""Target preprocessing: per-element linear energy references and normalisers.

* Linear references (OC22 style): E ≈ Σ_atoms ref[Z], fitted by least squares over the
  training set; the model then learns the residual. Users may also give E0s directly.
* Normalisers: the model predicts (E − refs − mean_E) / std_E and F / std_F; ``predict``
  undoes it (``eqv2.model.Potential``). Stored in every eqv2 checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

NUM_ELEMENTS = 119  # index = atomic number, 0 unused


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
    refs = np.zeros(NUM_ELEMENTS)
    refs[present] = coef
    return refs


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
