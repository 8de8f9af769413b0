"""IS2RE/IS2RS scoring: pair predicted relaxations with reference ones and compute the metrics.

:func:`score_relaxations` pairs prediction *i* with reference *i* (read with
:mod:`eqv2.simulate.relax_records`), checks they are the same atoms, and returns the metrics of
:mod:`eqv2.simulate.relax_metrics` plus per-structure rows. Failed relaxations (an error, no
energy, non-finite values) are listed and left out of the metrics.

``evaluate_relaxations`` is the deprecated former name of :func:`score_relaxations`; the reading
functions that lived here are re-exported from :mod:`eqv2.simulate.relax_records`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from eqv2.deprecation import deprecated_alias
from eqv2.graph import fixed_mask, structure_label
from eqv2.simulate.relax_metrics import (
    ADWT_THRESHOLDS,
    EWT_THRESHOLD,
    average_distance_within_threshold,
    energy_mae,
    energy_within_threshold,
    mean_distance,
)
from eqv2.simulate.relax_records import (
    ENERGY_KEYS,
    Prediction,
    RelaxTask,
    predictions_from_images,
    predictions_from_results,
    read_relax_file,
    relaxed_energy,
    split_relax_images,
)

__all__ = [
    "Prediction",
    "RelaxTask",
    "check_counts",
    "check_same_atoms",
    "counted_atoms",
    "evaluate_relaxations",
    "format_relax_metrics",
    "predictions_from_images",
    "predictions_from_results",
    "read_relax_file",
    "score_relaxations",
    "split_relax_images",
]


def check_same_atoms(index: int, predicted: Atoms, reference: Atoms) -> None:
    """Raise ``ValueError`` unless the two structures hold the same atoms in the same order.

    Args:
        index: the pair's position (for the message).
        predicted, reference: the structures compared (``info["system_id"]`` is compared too
            when both have one).
    """
    if len(predicted) != len(reference) or not np.array_equal(predicted.numbers, reference.numbers):
        what = "atoms" if len(predicted) != len(reference) else "elements (in order)"
        raise ValueError(
            f"{structure_label(index, reference, formula=True)}: the predicted structure "
            f"({predicted.get_chemical_formula()}, {len(predicted)} atoms) and the reference "
            f"({reference.get_chemical_formula()}, {len(reference)} atoms) differ in their "
            f"{what}. Fix: give one structure per reference structure, in the reference's "
            "order, with the same atoms."
        )
    ids = (predicted.info.get("system_id"), reference.info.get("system_id"))
    if None not in ids and ids[0] != ids[1]:
        raise ValueError(
            f"{structure_label(index, reference, formula=True)}: the predicted structure is of "
            f"system_id {ids[0]} but "
            f"the reference of system_id {ids[1]}. Fix: give them in the reference's order."
        )


def check_counts(n_predicted: int, n_reference: int) -> None:
    """Raise ``ValueError`` unless there is one prediction per reference structure."""
    if n_predicted != n_reference:
        raise ValueError(
            f"{n_predicted} structures to compare but {n_reference} reference structures; "
            "give exactly one per reference, in the same order."
        )


def _failure(pred: Prediction) -> str | None:
    """Why a prediction cannot be scored, or None if it can."""
    if pred.error:
        return pred.error
    if pred.atoms is None:
        return "no relaxed structure"
    if pred.energy is None:
        return "no predicted energy"
    if not math.isfinite(pred.energy):
        return f"non-finite predicted energy {pred.energy}"
    if not np.isfinite(pred.atoms.positions).all():
        return "non-finite predicted positions"
    return None


def counted_atoms(
    reference: Atoms, fix_tags: Sequence[int] = (), free_only: bool = True
) -> np.ndarray:
    """Atoms that count towards the IS2RS distance, as an ``(N,)`` bool mask.

    Args:
        reference: the reference relaxed structure (its ``FixAtoms`` and tags are read).
        fix_tags: atoms with these tags do not count either.
        free_only: False counts every atom.
    """
    if not free_only:
        return np.ones(len(reference), dtype=bool)
    return ~fixed_mask(reference, fix_tags)


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def score_relaxations(
    predictions: Sequence[Prediction],
    references: Sequence[Atoms],
    *,
    fix_tags: Sequence[int] = (),
    free_only: bool = True,
) -> dict[str, Any]:
    """IS2RE and IS2RS metrics of predicted relaxations against reference ones.

    Args:
        predictions: one per reference, same order (`predictions_from_images`/`_results`).
        references: reference relaxed structures with energies (`read_relax_file`).
        fix_tags: tags whose atoms do not count for IS2RS (e.g. ``(0,)`` when the reference
            has OC20 tags but no ``FixAtoms``); ``FixAtoms`` atoms never count.
        free_only: False counts every atom for IS2RS.

    Returns:
        JSON-ready dict: ``is2re`` (``energy_mae`` eV, ``energy_ewt``), ``is2rs`` (``adwt``,
        ``mean_distance`` Å), ``n_structures``, ``n_evaluated``, ``n_converged``, ``failures``
        (index, formula, error) and ``structures`` (one row each). Metrics are over the
        structures that did not fail (None if none).

    Raises:
        ValueError: the counts differ, a pair are not the same atoms, a reference has no energy,
            or a structure has no free atom (each message names the structure).
    """
    check_counts(len(predictions), len(references))
    rows, failures = [], []
    e_pred, e_ref, distances = [], [], []
    for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
        label = structure_label(i, ref, formula=True)
        ref_energy = relaxed_energy(ref)
        if ref_energy is None:
            raise ValueError(
                f"{label}: the reference has no energy (calculator result or info "
                f"{'/'.join(ENERGY_KEYS)}). Fix: store the relaxed energy in eV."
            )
        row: dict[str, Any] = {
            "index": i,
            "formula": ref.get_chemical_formula(),
            "converged": pred.converged,
            "steps": pred.steps,
            "energy_ref": ref_energy,
        }
        reason = _failure(pred)
        if reason is None:
            check_same_atoms(i, pred.atoms, ref)
            counted = counted_atoms(ref, fix_tags, free_only)
            d = mean_distance(
                pred.atoms.positions, ref.positions, ref.cell.array, ref.pbc, counted, label
            )
            e_pred.append(pred.energy)
            e_ref.append(ref_energy)
            distances.append(d)
            row.update(
                energy_pred=pred.energy,
                energy_abs_error=abs(pred.energy - ref_energy),
                mean_distance=d,
            )
        else:
            failures.append({"index": i, "formula": row["formula"], "error": reason})
            row["error"] = reason
        rows.append(row)
    return {
        "is2re": {
            "energy_mae": _nan_to_none(energy_mae(e_pred, e_ref)),
            "energy_ewt": _nan_to_none(energy_within_threshold(e_pred, e_ref)),
            "ewt_threshold_eV": EWT_THRESHOLD,
        },
        "is2rs": {
            "adwt": _nan_to_none(average_distance_within_threshold(distances)),
            "mean_distance": _nan_to_none(float(np.mean(distances)) if distances else math.nan),
            "adwt_thresholds_A": [float(ADWT_THRESHOLDS[0]), float(ADWT_THRESHOLDS[-1]), 0.001],
            "counted_atoms": "all" if not free_only else "free",
        },
        "n_structures": len(references),
        "n_evaluated": len(distances),
        "n_converged": sum(1 for p in predictions if p.converged),
        "failures": failures,
        "structures": rows,
    }


def format_relax_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table of `score_relaxations`' summary, failures listed below it."""

    def fmt(x: float | None, spec: str) -> str:
        return "n/a" if x is None else format(x, spec)

    is2re, is2rs = metrics["is2re"], metrics["is2rs"]
    header = (
        f"{'n':>5} {'evaluated':>9} {'converged':>9} {'energy MAE (eV)':>16} {'EwT':>7} "
        f"{'ADwT':>7} {'mean dist (Å)':>14}"
    )
    line = (
        f"{metrics['n_structures']:>5d} {metrics['n_evaluated']:>9d} "
        f"{metrics['n_converged']:>9d} {fmt(is2re['energy_mae'], '.4f'):>16} "
        f"{fmt(is2re['energy_ewt'], '.1%'):>7} {fmt(is2rs['adwt'], '.1%'):>7} "
        f"{fmt(is2rs['mean_distance'], '.4f'):>14}"
    )
    lines = [header, "-" * len(header), line]
    if metrics["failures"]:
        lines.append(f"\n{len(metrics['failures'])} failed (left out of the metrics):")
        lines += [f"  {f['index']} ({f['formula']}): {f['error']}" for f in metrics["failures"]]
    return "\n".join(lines)


#: Deprecated former name of :func:`score_relaxations` (removed in eqv2 0.2.0).
evaluate_relaxations = deprecated_alias(
    score_relaxations, "eqv2.simulate.relax_evaluation.evaluate_relaxations"
)
