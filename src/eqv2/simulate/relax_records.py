"""What IS2RE/IS2RS scoring compares: reference relaxations and predicted ones.

A reference file may hold

* the generator's IS2RE layout (``eqv2.data.generate.write_dataset``): per system an initial
  frame (``info["kind"] = "initial"``) followed by its relaxed frame (``kind = "relaxed"``);
* initial structures carrying their targets, ``info["energy_relaxed"]`` and
  ``arrays["pos_relaxed"]`` (OC20 IS2RE/IS2RS style);
* plain relaxed structures with energies (then the initial structures come from elsewhere).

Predictions are relaxed structures with energies, either an ``eqv2 relax`` output file or the
results of :func:`eqv2.simulate.relax_structures`; :mod:`eqv2.simulate.relax_evaluation` scores
them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read as ase_read

from eqv2.graph import structure_label

__all__ = [
    "ENERGY_KEYS",
    "Prediction",
    "RelaxTask",
    "predictions_from_images",
    "predictions_from_results",
    "read_relax_file",
    "relaxed_energy",
    "split_relax_images",
]

#: ``info`` keys (in order) that may hold a reference relaxed energy when no calculator result
#: does. A prediction's energy is read from its calculator or ``info["energy"]`` only: relaxed
#: structures keep their input's ``info``, where ``energy_relaxed`` is the reference's value.
ENERGY_KEYS = ("energy", "energy_relaxed", "y_relaxed")


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


def relaxed_energy(atoms: Atoms, info_keys: Sequence[str] = ENERGY_KEYS) -> float | None:
    """A relaxed structure's energy: its calculator's result, else the first of ``info_keys``.

    None when neither holds one.
    """
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
                energy=relaxed_energy(atoms, info_keys=("energy",)),
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
