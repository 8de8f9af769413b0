"""Validation during training: the model's metrics on a set, shared among the processes.

`Validation` scores a `Potential` in its current weights (the trainer applies the EMA weights
around it) on a dataset or list of structures: S2EF metrics in eV and eV/Å, stress metrics in
eV/Å³ for a model with a stress head on stress-labelled structures, and each named target's
metrics. Under torchrun each process evaluates every N-th structure and the metric sums are
added up, so every process returns the metrics of the whole set. Each set's DataLoader, with
its worker processes, is kept for the next evaluation of the same set until `close`.

Unlike `eqv2.train.evaluation.score_split` (after training: model-free baselines, parity
points), this is the per-``eval_every`` check that feeds the log, ``best.pt`` and early stopping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from eqv2.train.distributed import DistributedEnv, all_reduce_sum
from eqv2.train.loader import (
    LoaderConfig,
    StepReader,
    TrainingDataset,
    as_dataset,
    iterate,
    make_loader,
)
from eqv2.train.metrics import MetricAccumulator, PropertyAccumulator, StressAccumulator
from eqv2.train.sampler import evaluation_plans
from eqv2.train.targets_spec import TaskSpec

__all__ = ["Validation"]


class Validation:
    """Validation metrics of a potential on any number of sets, their loaders kept.

    Args:
        reader: makes the batch reader of a set (the trainer's, so labels are checked and
            referenced as in training).
        task: which outputs are scored (S2EF and/or named targets).
        loader: DataLoader workers and prefetching.
        device: where batches go.
        dist: this process's place in the job.
        seed: the loaders' worker seed.
        free_atoms_only: force metrics over free atoms only.
    """

    def __init__(
        self,
        reader: Callable[[TrainingDataset], StepReader],
        task: TaskSpec,
        loader: LoaderConfig,
        device: torch.device,
        dist: DistributedEnv,
        seed: int,
        free_atoms_only: bool = True,
    ) -> None:
        self.reader, self.task, self.loader_config = reader, task, loader
        self.device, self.dist, self.seed = device, dist, seed
        self.free_atoms_only = free_atoms_only
        self._loaders: dict[int, tuple[Any, int, Any]] = {}

    def loader(self, data: Any, batch_structures: int) -> Any:
        """A loader over this process's batches of ``data`` (kept, with its workers, for the
        next evaluation of the same set)."""
        key = id(data)
        if key in self._loaders and self._loaders[key][1] == batch_structures:
            return self._loaders[key][2]
        dataset = as_dataset(data, "val")
        plans = evaluation_plans(
            range(len(dataset)), self.dist.rank, self.dist.world_size, batch_structures
        )
        loader = make_loader(
            self.reader(dataset), plans, self.loader_config, self.device, self.seed
        )
        self._loaders[key] = (data, batch_structures, loader)  # keeps ``data`` alive
        return loader

    @torch.no_grad()
    def metrics(self, potential: Any, data: Any, batch_structures: int = 8) -> dict[str, float]:
        """The metrics of ``potential`` (put in eval mode) on ``data``; every process must
        call it (the sums are all-reduced)."""
        acc = MetricAccumulator(free_atoms_only=self.free_atoms_only)
        stress = StressAccumulator()
        vectors = tuple(t.name for t in self.task.targets if t.per_atom)
        named = PropertyAccumulator(self.task.target_names, vectors)
        potential.eval()
        for step in iterate(self.loader(data, batch_structures)):
            batch = step.micro[0].to(self.device)
            out = potential(batch.graph, stress=batch.stress is not None)
            named.update(out, batch.targets, batch.graph["fixed"])
            if batch.energy is not None:
                acc.update(out["energy"], batch.energy, out["forces"], batch.forces,
                           batch.graph["batch"], batch.graph["fixed"])  # fmt: skip
            if batch.stress is not None:
                stress.update(out["stress"], batch.stress)
        named.set_totals(all_reduce_sum(named.totals()))
        if self.task.s2ef is None:
            return named.compute()
        acc.set_totals(all_reduce_sum(acc.totals()))
        stress.set_totals(all_reduce_sum(stress.totals()))
        return {**acc.compute(), **stress.compute(), **named.compute()}

    def close(self) -> None:
        """Drop the kept loaders (their persistent workers stop with their last reference)."""
        self._loaders.clear()
