"""IS2RE/IS2RS evaluation: read reference relaxations, pair them with predictions, score them.

A reference file may hold

* the generator's IS2RE layout (``eqv2.data.generate.write_dataset``): per system an initial
  frame (``info["kind"] = "initial"``) followed by its relaxed frame (``kind = "relaxed"``);
* initial structures carrying their targets, ``info["energy_relaxed"]`` and
  ``arrays["pos_relaxed"]`` (OC20 IS2RE/IS2RS style);
* plain relaxed structures with energies (then the initial structures come from elsewhere).

Predictions are relaxed structures with energies, either an ``eqv2 relax`` output file or the
results of :func:`eqv2.simulate.relax_structures`. `evaluate_relaxations` pairs prediction *i* with
reference *i*, checks they are the same atoms, and returns the metrics of
:mod:`eqv2.simulate.relax_metrics` plus per-structure rows. Failed relaxations (an error, no
energy, non-finite values) are listed and left out of the metrics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read as ase_read

from eqv2.graph import fixed_mask, structure_label
from eqv2.simulate.relax_metrics import (
    ADWT_THRESHOLDS,
    EWT_THRESHOLD,
    average_distance_within_threshold,
    energy_mae,
    energy_within_threshold,
    mean_distance,
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
    "split_relax_images",
]

#: ``info`` keys (in order) that may hold a reference relaxed energy when no calculator result
#: does. A prediction's energy is read from its calculator or ``info["energy"]`` only: relaxed
#: structures keep their input's ``info``, where ``energy_relaxed`` is the reference's value.
_ENERGY_KEYS = ("energy", "energy_relaxed", "y_relaxed")


@dataclass
class RelaxTask:
    """What a relaxation data file provides.

    Attributes:
        initial: the structures to relax, or None when the file holds relaxed structures only.
        reference: the reference relaxed structures (positions and energy), one per system.
    """

    initial: list[Atoms] | None
    reference: list[Atoms]


@dataclass
class Prediction:
    """One predicted relaxation (``atoms`` is None when it failed before producing one)."""

    atoms: Atoms | None
    energy: float | None
    converged: bool | None = None
    steps: int | None = None
    error: str | None = None


def _info_energy(atoms: Atoms, keys: Sequence[str]) -> float | None:
    for key in keys:
        if key in atoms.info:
            return float(atoms.info[key])
    return None


def _relaxed_energy(atoms: Atoms, info_keys: Sequence[str] = _ENERGY_KEYS) -> float | None:
    """A relaxed structure's energy: its calculator's result, else an ``info`` entry."""
    results = getattr(atoms.calc, "results", None) or {}
    if "energy" in results:
        return float(results["energy"])
    return _info_energy(atoms, info_keys)


def _reference_from_initial(atoms: Atoms, index: int, source: str) -> Atoms:
    """The relaxed target of an initial structure holding ``pos_relaxed`` and its energy."""
    energy = _info_energy(atoms, ("energy_relaxed", "y_relaxed"))
    if energy is None:
        raise ValueError(
            f"{source}: {structure_label(index, atoms, formula=True)} has arrays['pos_relaxed'] "
            "but no "
            "info['energy_relaxed'] (or 'y_relaxed'). Fix: store the relaxed energy (eV) there."
        )
    relaxed = atoms.copy()
    relaxed.positions = np.asarray(atoms.arrays["pos_relaxed"], dtype=np.float64)
    relaxed.calc = SinglePointCalculator(relaxed, energy=energy)
    return relaxed


def split_relax_images(images: Sequence[Atoms], source: str = "<structures>") -> RelaxTask:
    """Recognise the layout of a relaxation data file (see the module docstring).

    Args:
        images: every frame of the file, in order.
        source: the file's name, for messages.

    Returns:
        the initial structures (if the file has them) and the reference relaxed ones.

    Raises:
        ValueError: an empty file, initial/relaxed frames that do not alternate or belong to
            different systems, or ``pos_relaxed`` without a relaxed energy.
    """
    images = list(images)
    if not images:
        raise ValueError(f"{source}: holds no structures.")
    kinds = [a.info.get("kind") for a in images]
    if "initial" in kinds and "relaxed" in kinds:
        for i, (atoms, kind) in enumerate(zip(images, kinds, strict=True)):
            expected = "initial" if i % 2 == 0 else "relaxed"
            if kind != expected:
                raise ValueError(
                    f"{source}: frame {i} ({atoms.get_chemical_formula()}) has "
                    f"info['kind']={kind!r}, expected {expected!r}: an IS2RE file holds per "
                    "system an initial frame then its relaxed frame. Fix: write the pairs in "
                    "that order (eqv2.data.generate.write_dataset does)."
                )
        if len(images) % 2:
            raise ValueError(
                f"{source}: the last initial frame ({len(images) - 1}) has no relaxed frame."
            )
        initial, reference = images[0::2], images[1::2]
        for k, (a, b) in enumerate(zip(initial, reference, strict=True)):
            ids = (a.info.get("system_id"), b.info.get("system_id"))
            if None not in ids and ids[0] != ids[1]:
                raise ValueError(
                    f"{source}: frames {2 * k} and {2 * k + 1} belong to different systems "
                    f"(system_id {ids[0]} and {ids[1]}); each initial frame must be followed "
                    "by its own relaxed frame."
                )
        return RelaxTask(initial=list(initial), reference=list(reference))
    if all("pos_relaxed" in a.arrays for a in images):
        refs = [_reference_from_initial(a, i, source) for i, a in enumerate(images)]
        return RelaxTask(initial=images, reference=refs)
    return RelaxTask(initial=None, reference=images)


def read_relax_file(path: str | os.PathLike) -> RelaxTask:
    """Read a relaxation data file (any ASE-readable format) and recognise its layout.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: see `split_relax_images`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    return split_relax_images(ase_read(path, index=":"), source=str(path))


def predictions_from_images(images: Sequence[Atoms]) -> list[Prediction]:
    """Predictions from relaxed structures, e.g. an ``eqv2 relax`` output file.

    The energy is the calculator's (extxyz ``energy``) or ``info["energy"]``; ``info`` keys
    ``converged``, ``relax_steps`` and ``relax_error`` (or ``error``) are read when present.
    When the frames are the relaxation of a whole IS2RE file (some ``kind="initial"``), the
    frames that started from ``kind="relaxed"`` are dropped, so the rest pair with the file's
    systems.
    """
    images = list(images)
    if any(a.info.get("kind") == "initial" for a in images):
        images = [a for a in images if a.info.get("kind") != "relaxed"]
    out = []
    for atoms in images:
        error = atoms.info.get("relax_error", atoms.info.get("error"))
        converged = atoms.info.get("converged")
        steps = atoms.info.get("relax_steps")
        out.append(
            Prediction(
                atoms=atoms,
                energy=_relaxed_energy(atoms, info_keys=("energy",)),
                converged=None if converged is None else bool(converged),
                steps=None if steps is None else int(steps),
                error=None if error in (None, "") else str(error),
            )
        )
    return out


def predictions_from_results(results: Sequence[Any]) -> list[Prediction]:
    """Predictions from ``eqv2.simulate.relax_structures`` results (``RelaxResult``), in order."""
    ordered = sorted(results, key=lambda r: r.index)
    return [
        Prediction(
            atoms=r.atoms,
            energy=r.energy,
            converged=bool(r.converged),
            steps=int(r.steps),
            error=r.error,
        )
        for r in ordered
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


def evaluate_relaxations(
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
        ref_energy = _relaxed_energy(ref)
        if ref_energy is None:
            raise ValueError(
                f"{label}: the reference has no energy (calculator result or info "
                f"{'/'.join(_ENERGY_KEYS)}). Fix: store the relaxed energy in eV."
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
    """A plain-text table of `evaluate_relaxations`' summary, failures listed below it."""

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
