"""IS2RE and IS2RS metrics, as OC20 defines them (pure numpy on arrays).

* ``energy_mae``: mean |E_pred − E_ref| of the relaxed energies over structures (eV).
* ``energy_within_threshold`` (EwT): fraction of structures with |E_pred − E_ref| < 0.02 eV.
* ``average_distance_within_threshold`` (ADwT): for each structure the mean, over its counted
  atoms, of the distance between predicted and reference relaxed positions; then, for each
  threshold t in 0.010, 0.011, ..., 0.499 Å (490 values, OC20's ``arange(0.01, 0.5, 0.001)``), the
  fraction of structures whose mean distance is < t; ADwT is the average of those fractions.

OC20 counts only free atoms (surface and adsorbate; fixed subsurface atoms move by definition
zero) and measures each displacement through the periodic cell. Here the displacement is reduced
to its true minimum image along the periodic axes only (`eqv2.graph.minimum_image`), which also
holds for strongly skewed cells and open (non-periodic) axes; OC20's own code wraps fractional
coordinates to ±0.5 on every axis, which agrees with this whenever the displacement's fractional
coordinates lie within ±0.5 (small displacements in near-orthogonal slab cells).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eqv2.graph.minimum_image import minimum_image

__all__ = [
    "ADWT_THRESHOLDS",
    "EWT_THRESHOLD",
    "average_distance_within_threshold",
    "energy_mae",
    "energy_within_threshold",
    "mean_distance",
]

#: OC20's IS2RE energy-within-threshold bound (eV).
EWT_THRESHOLD = 0.02
#: OC20's ADwT thresholds, 0.010 to 0.499 Å in steps of 0.001 Å (built from integers so every
#: value is the nearest double to k/1000, without ``arange`` round-off).
ADWT_THRESHOLDS: np.ndarray = np.arange(10, 500) / 1000.0


def _energies(predicted: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    if pred.shape != ref.shape:
        raise ValueError(
            f"{len(pred)} predicted energies but {len(ref)} reference energies; "
            "pass one of each per structure."
        )
    return np.abs(pred - ref)


def energy_mae(predicted: Sequence[float], reference: Sequence[float]) -> float:
    """Mean absolute error of relaxed energies (eV); NaN when there are none.

    Args:
        predicted, reference: one energy per structure (eV), same order.

    Returns:
        mean |predicted − reference|.
    """
    errors = _energies(predicted, reference)
    return float(errors.mean()) if errors.size else float("nan")


def energy_within_threshold(
    predicted: Sequence[float], reference: Sequence[float], threshold: float = EWT_THRESHOLD
) -> float:
    """Fraction of structures whose |predicted − reference| energy is < ``threshold`` (EwT).

    Args:
        predicted, reference: one energy per structure (eV), same order.
        threshold: bound in eV (OC20: 0.02, strict).

    Returns:
        fraction in [0, 1]; NaN when there are no structures.
    """
    errors = _energies(predicted, reference)
    return float(np.mean(errors < threshold)) if errors.size else float("nan")


def mean_distance(
    predicted: np.ndarray,
    reference: np.ndarray,
    cell: np.ndarray,
    pbc: Sequence[bool],
    counted: np.ndarray | None = None,
    label: str = "The structure",
) -> float:
    """Mean minimum-image distance between predicted and reference positions (Å).

    Args:
        predicted, reference: ``(N, 3)`` positions of the same atoms in the same order.
        cell, pbc: the reference structure's cell and periodicity.
        counted: ``(N,)`` bool, the atoms to average over (OC20: the free ones); all if None.
        label: how error messages name the structure.

    Returns:
        mean over counted atoms of |minimum_image(predicted − reference)|.

    Raises:
        ValueError: shapes differ, or no atom is counted.
    """
    pred = np.asarray(predicted, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if pred.shape != ref.shape or pred.ndim != 2 or pred.shape[1] != 3:
        raise ValueError(
            f"{label}: predicted positions have shape {pred.shape} and reference positions "
            f"{ref.shape}; both must be (N, 3) for the same N atoms."
        )
    mask = np.ones(len(ref), dtype=bool) if counted is None else np.asarray(counted, dtype=bool)
    if mask.shape != (len(ref),):
        raise ValueError(f"{label}: counted has shape {mask.shape}; expected ({len(ref)},).")
    if not mask.any():
        raise ValueError(
            f"{label}: every atom is fixed, so there are no free atoms to compare. Fix: drop "
            "the structure, or count all atoms (free_only=False, --all-atoms)."
        )
    d = minimum_image(pred[mask] - ref[mask], cell, pbc, label)
    return float(np.linalg.norm(d, axis=1).mean())


def average_distance_within_threshold(
    mean_distances: Sequence[float], thresholds: Sequence[float] = ADWT_THRESHOLDS
) -> float:
    """OC20's ADwT: fraction of structures with mean distance < t, averaged over thresholds t.

    Args:
        mean_distances: one `mean_distance` per structure (Å).
        thresholds: distance thresholds (Å); OC20's by default.

    Returns:
        ADwT in [0, 1]; NaN when there are no structures.
    """
    d = np.asarray(mean_distances, dtype=np.float64).reshape(-1)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if d.size == 0:
        return float("nan")
    if t.size == 0:
        raise ValueError("thresholds is empty; pass at least one distance threshold.")
    # NaN distances compare False: a structure without a distance never counts as within.
    return float(np.mean(d[:, None] < t[None, :]))
