"""Per-structure predictions of an evaluation, streamed into one extxyz file.

Each evaluated structure is written as read from its dataset (positions, cell, tags, fixed
atoms, ``info``), with the labels it was scored against under the plain keys — ``energy``
(eV), ``forces`` (eV/Å), ``stress`` (eV/Å³, Voigt order, when read) — and the model's
predictions beside them under `PREFIX` keys: ``eqv2_energy`` (``info``), ``eqv2_forces``
(``arrays``), ``eqv2_stress``; ``info["index"]`` is the structure's position in the dataset.
The file appears whole or not at all (written to a temporary name, then renamed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eqv2.safe_io import atomic_write_path
from eqv2.train.loader import LabelledBatch

__all__ = ["PREFIX", "prediction_writer"]

#: Prefix of the predicted quantities' keys.
PREFIX = "eqv2_"


def _voigt(stress: np.ndarray) -> np.ndarray:
    """(3, 3) → ASE's Voigt order (xx, yy, zz, yz, xz, xy), as extxyz files hold stress."""
    return stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


def _labelled_atoms(record: Any, index: int, labels: dict[str, np.ndarray]) -> Any:
    """``record`` as ``Atoms`` carrying ``labels`` (reference values) as its results."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = record.to_atoms() if hasattr(record, "to_atoms") else record.copy()
    atoms.calc = SinglePointCalculator(atoms, **labels)
    atoms.info["index"] = index
    return atoms


@contextlib.contextmanager
def prediction_writer(path: str | Path, dataset: Any) -> Iterator[Any]:
    """A `score_split` ``on_batch`` callback writing each batch's structures of ``dataset``
    (random access, ``dataset[i]``) with labels and predictions to ``path`` (extxyz)."""
    from ase.io import write

    with atomic_write_path(path) as tmp, open(tmp, "w") as handle:

        def on_batch(batch: LabelledBatch, out: dict[str, torch.Tensor]) -> None:
            owner = batch.graph["batch"].cpu().numpy()
            frames = []
            for k, index in enumerate(batch.indices):
                rows = owner == k
                labels = {
                    "energy": float(batch.energy[k]),
                    "forces": batch.forces[rows].cpu().numpy(),
                }
                predicted = {
                    "energy": float(out["energy"][k]),
                    "forces": out["forces"][rows].detach().double().cpu().numpy(),
                }
                if batch.stress is not None and "stress" in out:
                    if np.isfinite(batch.stress[k].cpu().numpy()).all():
                        labels["stress"] = _voigt(batch.stress[k].cpu().numpy())
                    predicted["stress"] = _voigt(out["stress"][k].detach().double().cpu().numpy())
                atoms = _labelled_atoms(dataset[index], int(index), labels)
                atoms.info[PREFIX + "energy"] = predicted["energy"]
                atoms.arrays[PREFIX + "forces"] = predicted["forces"]
                if "stress" in predicted:
                    atoms.info[PREFIX + "stress"] = predicted["stress"]
                frames.append(atoms)
            write(handle, frames, format="extxyz")

        yield on_batch
        handle.flush()
