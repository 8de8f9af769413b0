"""Element references and normalisers fitted in one streaming pass over the training set.

The least-squares element-reference fit and the normalisers need only running sums: with ``c``
a structure's element counts (119,) and ``E`` its energy, the sums of ``c cᵀ``, ``c E``, ``c``,
``E``, ``E²``, and of the squared force components determine the minimum-norm references (the
normal equations, solved with a pseudo-inverse) and the mean and variance of ``E − c·refs``.
So fitting holds O(119²) numbers, never the data set.

Stress labels, where structures have them, add the sums that fit the normalisers of the two
parts a decomposed stress head predicts (`eqv2.so3.rank2.rank2_to_irreps`: ``iso = tr σ/√3``
and the five l=2 components) the way fairchem 1.10's ``fit_normalizers`` fits them for the
OMat24 configs (``normalizer.fit.targets: {stress_isotropic: {}, stress_anisotropic: {}}``,
configs/omat24/omat24_dataset.yml): the mean over all values, and the root of the summed squared
deviations divided by the number of structures minus one (minus nothing when the mean is
exactly 0). For the anisotropic part the sum runs over all five components of each structure
while the divisor counts structures, so its ``std`` is √5 times the per-component deviation;
eqv2 keeps that definition so a refit gives the numbers a fairchem fit would.

Named scalar targets (`eqv2.train.targets_spec.TargetSpec`) get a normaliser each, the mean
and standard deviation over the training structures (in the target's unit, after its
``scale``), as the energy's. A run without energy and forces reads only its targets.

Which structures: all of them up to `FIT_SAMPLE` (100,000); beyond that a seeded uniform
subsample of `FIT_SAMPLE` structures (without replacement, read in index order). The statistics
of 10⁵ structures pin a mean and a standard deviation to well under 1 %, while reading a 10⁸
structure set would take longer than a useful fraction of training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase.data import atomic_numbers

from eqv2.data.errors import DataError
from eqv2.data.targets import NUM_ELEMENTS, read_displacement_target, read_scalar_target
from eqv2.so3.rank2 import rank2_to_irreps
from eqv2.train.loader import (
    ReadFailure,
    TrainingDataset,
    as_dataset,
    identity_collate,
    iterate,
)
from eqv2.train.worker_init import WorkerInit

if TYPE_CHECKING:
    from eqv2.train.run_config import DataConfig
    from eqv2.train.targets_spec import TaskSpec

__all__ = ["FIT_SAMPLE", "TargetStatistics", "fit_sample", "fit_targets", "stream_statistics"]

#: At most this many structures are read to fit element references and normalisers.
FIT_SAMPLE = 100_000
_CHUNK = 256  # structures per worker task


def fit_sample(num_structures: int, limit: int = FIT_SAMPLE, seed: int = 0) -> np.ndarray:
    """All indices when there are at most ``limit``, else ``limit`` of them drawn with ``seed``
    (sorted, so files are read front to back)."""
    if num_structures <= limit:
        return np.arange(num_structures)
    rng = np.random.default_rng([seed, 0x5EED])
    return np.sort(rng.choice(num_structures, size=limit, replace=False))


@dataclass
class TargetStatistics:
    """Running sums over structures for the reference fit and the normalisers."""

    n: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(NUM_ELEMENTS))
    gram: np.ndarray = field(default_factory=lambda: np.zeros((NUM_ELEMENTS, NUM_ELEMENTS)))
    counts_energy: np.ndarray = field(default_factory=lambda: np.zeros(NUM_ELEMENTS))
    energy: float = 0.0
    energy_sq: float = 0.0
    force_sq: float = 0.0
    force_components: int = 0
    #: structures with a stress label, the sum of their stresses (eV/Å³), and the sums and
    #: sums of squares of their isotropic and anisotropic parts
    stress_n: int = 0
    stress_sum: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    isotropic: float = 0.0
    isotropic_sq: float = 0.0
    anisotropic: float = 0.0
    anisotropic_sq: float = 0.0
    #: per named target: [count, sum, sum of squares] of its values
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def add_targets(self, values: dict[str, Sequence[float]], zero_mean: bool = False) -> None:
        """Add named targets' values (one per structure, in the target's unit; or the
        components of per-atom vectors, with ``zero_mean``: their normaliser is then the root
        mean square with mean 0, as the forces')."""
        for name, v in values.items():
            v = np.asarray(v, dtype=np.float64)
            sums = np.array([len(v), 0.0 if zero_mean else v.sum(), v @ v])
            self.targets[name] = self.targets.get(name, np.zeros(3)) + sums

    def target_mean(self, name: str) -> float:
        """The mean of a named target over the structures added."""
        n, total, _ = self.targets[name]
        return float(total / n)

    def add(
        self,
        numbers: Sequence[np.ndarray],
        energies: Sequence[float],
        forces: Sequence[np.ndarray],
        stresses: Sequence[np.ndarray | None] = (),
    ) -> None:
        """Add structures: their atomic numbers, energies (eV), forces (eV/Å) and stresses
        ((3, 3) eV/Å³, or None for a structure without one)."""
        e = np.asarray(energies, dtype=np.float64)
        c = np.zeros((len(e), NUM_ELEMENTS))
        for row, z in enumerate(numbers):
            np.add.at(c[row], np.asarray(z, dtype=np.int64), 1.0)
        self.n += len(e)
        self.counts += c.sum(axis=0)
        self.gram += c.T @ c
        self.counts_energy += c.T @ e
        self.energy += float(e.sum())
        self.energy_sq += float(e @ e)
        for f in forces:
            f = np.asarray(f, dtype=np.float64)
            self.force_sq += float(np.sum(f * f))
            self.force_components += f.size
        labelled = [np.asarray(x, np.float64) for x in stresses if x is not None]
        if labelled:
            stack = np.stack(labelled)
            iso, aniso = (t.numpy() for t in rank2_to_irreps(torch.from_numpy(stack)))
            self.stress_n += len(stack)
            self.stress_sum += stack.sum(axis=0)
            self.isotropic += float(iso.sum())
            self.isotropic_sq += float(np.sum(iso * iso))
            self.anisotropic += float(aniso.sum())
            self.anisotropic_sq += float(np.sum(aniso * aniso))

    def merge(self, other: TargetStatistics) -> None:
        """Add another accumulator's sums."""
        self.n += other.n
        self.counts += other.counts
        self.gram += other.gram
        self.counts_energy += other.counts_energy
        self.energy += other.energy
        self.energy_sq += other.energy_sq
        self.force_sq += other.force_sq
        self.force_components += other.force_components
        self.stress_n += other.stress_n
        self.stress_sum += other.stress_sum
        self.isotropic += other.isotropic
        self.isotropic_sq += other.isotropic_sq
        self.anisotropic += other.anisotropic
        self.anisotropic_sq += other.anisotropic_sq
        for name, sums in other.targets.items():
            self.targets[name] = self.targets.get(name, np.zeros(3)) + sums

    def mean_stress(self) -> np.ndarray | None:
        """The mean stress label (3, 3) in eV/Å³, or None without stress labels."""
        return self.stress_sum / self.stress_n if self.stress_n else None

    def _stress_normalizer(self, total: float, total_sq: float, width: int) -> dict[str, float]:
        """fairchem's fit of one stress part with ``width`` values per structure."""
        n = self.stress_n
        mean = total / (n * width)
        deviation = max(total_sq - n * width * mean * mean, 0.0)
        rmsd = float(np.sqrt(deviation / max(n - (0 if mean == 0.0 else 1), 1)))
        return {"mean": float(mean), "std": rmsd if rmsd > 1e-12 else 1.0}

    def element_references(self) -> np.ndarray:
        """Per-element energies (119,) minimising Σ (E − c·refs)², minimum norm (elements
        that never occur get 0; elements that always occur in one ratio share evenly)."""
        present = self.counts > 0
        refs = np.zeros(NUM_ELEMENTS)
        gram = self.gram[np.ix_(present, present)]
        refs[present] = np.linalg.pinv(gram, hermitian=True) @ self.counts_energy[present]
        return refs

    def normalizers(self, references: np.ndarray | None = None) -> dict[str, dict[str, float]]:
        """Mean and standard deviation of ``E − c·references`` over structures, and the force
        RMS over components (mean 0), as `eqv2.data.targets.fit_normalizers` defines them;
        with stress labels also ``stress_isotropic`` and ``stress_anisotropic`` (fairchem's
        fit, see the module docstring); and each named target's mean and standard deviation.
        Without energies (a run on named targets only) just the targets'."""
        out = {name: _mean_std(*sums) for name, sums in self.targets.items()}
        if self.n == 0:
            if out:
                return out
            raise ValueError("no structures to fit normalisers on.")
        r = np.zeros(NUM_ELEMENTS) if references is None else np.asarray(references, np.float64)
        mean = (self.energy - r @ self.counts) / self.n
        second = (self.energy_sq - 2 * r @ self.counts_energy + r @ self.gram @ r) / self.n
        std = float(np.sqrt(max(second - mean * mean, 0.0))) if self.n > 1 else 1.0
        out["energy"] = {"mean": float(mean), "std": std if std > 1e-12 else 1.0}
        if self.force_components:
            rms = float(np.sqrt(self.force_sq / self.force_components))
            out["forces"] = {"mean": 0.0, "std": rms if rms > 1e-12 else 1.0}
        if self.stress_n:
            out["stress_isotropic"] = self._stress_normalizer(self.isotropic, self.isotropic_sq, 1)
            out["stress_anisotropic"] = self._stress_normalizer(
                self.anisotropic, self.anisotropic_sq, 5
            )
        return out


def _mean_std(n: float, total: float, total_sq: float) -> dict[str, float]:
    mean = total / n
    std = float(np.sqrt(max(total_sq / n - mean * mean, 0.0))) if n > 1 else 1.0
    return {"mean": float(mean), "std": std if std > 1e-12 else 1.0}


class _ChunkStatistics:
    """Statistics of a chunk of structures (a DataLoader item, computed in a worker):
    energies, forces and stresses when ``s2ef``, and the named ``targets``."""

    def __init__(
        self, dataset: TrainingDataset, name: str, targets: tuple = (), s2ef: bool = True
    ) -> None:
        self.dataset = dataset
        self.name = name
        self.targets = targets
        self.s2ef = s2ef
        self._vectors = {t.name for t in targets if t.per_atom}

    def __getitem__(self, indices: Sequence[int]) -> TargetStatistics | ReadFailure:
        numbers, energies, forces, stresses = [], [], [], []
        values: dict[str, list[float]] = {t.name: [] for t in self.targets}
        for i in indices:
            try:
                s = self.dataset[int(i)].validate(("energy", "forces") if self.s2ef else ())
                for t in self.targets:
                    if t.per_atom:  # free atoms' components; mean 0 (`add_targets`)
                        d = read_displacement_target(s, t.read_key, t.name)
                        values[t.name].extend(d[~s.fixed].ravel())
                    else:
                        values[t.name].append(read_scalar_target(s, t.read_key, t.scale, t.name))
            except DataError as exc:
                return ReadFailure(DataError(f"{self.name} structure {int(i)}: {exc}"))
            numbers.append(s.numbers)
            energies.append(s.energy)
            forces.append(s.forces)
            stresses.append(s.stress)
        stats = TargetStatistics()
        if self.s2ef:
            stats.add(numbers, energies, forces, stresses)
        stats.add_targets({k: v for k, v in values.items() if k not in self._vectors})
        stats.add_targets({k: values[k] for k in self._vectors}, zero_mean=True)
        return stats


def stream_statistics(
    data: Any,
    num_workers: int = 0,
    limit: int = FIT_SAMPLE,
    seed: int = 0,
    name: str = "train",
    task: TaskSpec | None = None,
) -> TargetStatistics:
    """One pass over ``data`` (a dataset or a list of structures), or over its `fit_sample`,
    in ``num_workers`` processes; the sums are added in index order (deterministic).
    ``task``: which labels to read (default: energy and forces)."""
    dataset = as_dataset(data, name)
    sample = fit_sample(len(dataset), limit, seed)
    chunks = [sample[k : k + _CHUNK].tolist() for k in range(0, len(sample), _CHUNK)]
    loader = torch.utils.data.DataLoader(
        _ChunkStatistics(
            dataset, name, task.targets if task else (), task is None or task.s2ef is not None
        ),  # type: ignore[arg-type]  # keyed by index chunks
        batch_size=None,
        sampler=chunks,  # type: ignore[arg-type]
        num_workers=min(num_workers, len(chunks)),
        collate_fn=identity_collate,
        generator=torch.Generator().manual_seed(seed),
        worker_init_fn=WorkerInit(os.getpid(), seed=False),
    )
    total = TargetStatistics()
    for part in iterate(loader):
        total.merge(part)
    return total


def fit_targets(
    train: Any, data: DataConfig
) -> tuple[dict[str, dict[str, float]], np.ndarray | None]:
    """Normalisers and element references (or the user's E0s) from the training set.

    ``train``: a dataset or list of structures (streamed once, or its seeded subsample of at
    most `FIT_SAMPLE` structures), or its `TargetStatistics`.
    """
    stats = train if isinstance(train, TargetStatistics) else stream_statistics(train)
    refs = None
    if data.e0s:
        refs = np.zeros(NUM_ELEMENTS)
        for symbol, value in data.e0s.items():
            if symbol not in atomic_numbers:
                raise ValueError(f"data.e0s: unknown element {symbol!r}; use symbols like 'Cu'.")
            refs[atomic_numbers[symbol]] = float(value)
    elif data.linear_references and stats.n:
        refs = stats.element_references()
    return stats.normalizers(refs), refs
