"""Streaming S2EF evaluation of a split after training: the model, two baselines, parity points.

A split is read batch by batch through the same pipeline as training (`StepReader`, DataLoader
workers); metrics are running sums (`MetricAccumulator`), so no split is ever held in memory.
Under torchrun each process evaluates every N-th structure and the sums are added up: every
process gets the metrics of the whole split. Alongside the model, two model-free baselines with
training statistics give the scale: zero forces with the training set's mean energy
(``baseline``), and zero forces with the sum of the element references (``element_refs``).
For a model with a stress head, stress-labelled structures add the stress metrics
(`eqv2.train.metrics`) to the model's and the mean baseline's (which predicts the training
set's mean stress for every structure).
Named per-structure targets (a `TaskSpec`'s) add ``<name>_mae`` and ``<name>_rmse`` to the
model's metrics and to the mean baseline's (which predicts the training mean of each target);
a run on named targets only reads and reports nothing else.
Parity plots get the predictions of at most `PARITY_SAMPLE` structures (the first ones).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eqv2.deprecation import deprecated_alias
from eqv2.train.distributed import DistributedEnv, all_reduce_sum
from eqv2.train.loader import (
    GraphSettings,
    LabelledBatch,
    LoaderConfig,
    StepReader,
    as_dataset,
    iterate,
    make_loader,
)
from eqv2.train.metrics import MetricAccumulator, PropertyAccumulator, StressAccumulator
from eqv2.train.sampler import evaluation_plans
from eqv2.train.targets_spec import TaskSpec

__all__ = ["PARITY_SAMPLE", "SplitResult", "evaluate_split", "score_split"]

#: Structures whose predictions are kept for the parity plots.
PARITY_SAMPLE = 5_000


@dataclass
class SplitResult:
    """Metrics of the model and of the baselines on one split, and parity-plot points."""

    metrics: dict[str, float]
    baseline: dict[str, float]
    element_refs: dict[str, float] | None
    parity: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def parity_arrays(self) -> dict[str, np.ndarray]:
        """``energy_ref``, ``energy_pred``, ``forces_ref``, ``forces_pred`` (concatenated)."""
        return {k: np.concatenate(v) if v else np.zeros(0) for k, v in self.parity.items()}


def score_split(
    potential: Any,
    data: Any,
    *,
    name: str,
    train_mean_energy: float,
    train_mean_stress: np.ndarray | None = None,
    free_atoms_only: bool = True,
    indices: np.ndarray | None = None,
    loader: LoaderConfig | None = None,
    batch_structures: int = 8,
    on_batch: Callable[[LabelledBatch, dict[str, torch.Tensor]], None] | None = None,
    task: TaskSpec | None = None,
    train_mean_targets: Mapping[str, float] | None = None,
) -> SplitResult:
    """Evaluate ``potential`` (in eval mode, its current weights) on ``data`` (a dataset or a
    list of structures), or on its structures ``indices``; every process must call it.
    ``train_mean_stress`` (3, 3) eV/Å³: the mean baseline's stress (None: no stress baseline).
    ``on_batch(batch, predictions)`` sees every batch this process evaluates, in order (e.g.
    to write per-structure predictions). ``task``: which outputs to score (default: energy
    and forces); ``train_mean_targets``: the mean baseline's value of each named target."""
    task = task or TaskSpec()
    s2ef = task.s2ef is not None
    dataset = as_dataset(data, name)
    env = DistributedEnv.current()
    chosen = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    plans = evaluation_plans(chosen, env.rank, env.world_size, batch_structures)
    has_refs = bool(potential.has_element_references)
    refs = potential.element_references.cpu().numpy() if has_refs else None
    stress = potential.has_stress_head and s2ef
    reader = StepReader(
        dataset, GraphSettings.of(potential), refs, name, "read" if stress else "ignore",
        task.targets, s2ef,
    )  # fmt: skip
    vectors = tuple(t.name for t in task.targets if t.per_atom)
    named = tuple(PropertyAccumulator(task.target_names, vectors) for _ in range(2))
    means = {n: float((train_mean_targets or {}).get(n, 0.0)) for n in task.target_names}
    device = potential.device
    model = MetricAccumulator(free_atoms_only=free_atoms_only)
    mean = MetricAccumulator(free_atoms_only=free_atoms_only)
    composition = MetricAccumulator(free_atoms_only=free_atoms_only)
    stress_acc = (StressAccumulator(), StressAccumulator())  # model, mean baseline
    parity: dict[str, list[np.ndarray]] = {
        k: [] for k in ("energy_ref", "energy_pred", "forces_ref", "forces_pred")
    }
    kept = 0
    was_training = potential.training
    potential.eval()
    try:
        with torch.no_grad():
            batches = make_loader(reader, plans, loader or LoaderConfig(), device, seed=env.rank)
            for step in iterate(batches):
                batch = step.micro[0].to(device)
                out = potential(batch.graph, stress=stress)
                fixed = batch.graph["fixed"]
                named[0].update(out, batch.targets, fixed)
                named[1].update({n: torch.full_like(v, means[n]) for n, v in batch.targets.items()},
                                batch.targets, fixed)  # fmt: skip
                if not s2ef:
                    continue
                at = (batch.graph["batch"], batch.graph["fixed"])
                if stress:
                    stress_acc[0].update(out["stress"], batch.stress)
                    if train_mean_stress is not None:
                        mean_stress = torch.as_tensor(train_mean_stress, dtype=torch.float64)
                        stress_acc[1].update(mean_stress.expand(len(batch.stress), 3, 3),
                                             batch.stress)  # fmt: skip
                model.update(out["energy"], batch.energy, out["forces"], batch.forces, *at)
                if on_batch is not None:
                    on_batch(batch, out)
                zeros = torch.zeros_like(batch.forces)
                mean.update(torch.full_like(batch.energy, train_mean_energy), batch.energy, zeros,
                            batch.forces, *at)  # fmt: skip
                composition.update(batch.reference, batch.energy, zeros, batch.forces, *at)
                if kept < PARITY_SAMPLE:
                    parity["energy_ref"].append(batch.energy.cpu().numpy())
                    parity["energy_pred"].append(out["energy"].detach().double().cpu().numpy())
                    parity["forces_ref"].append(batch.forces.cpu().numpy())
                    parity["forces_pred"].append(out["forces"].detach().double().cpu().numpy())
                    kept += len(batch.energy)
    finally:
        potential.train(was_training)
    for acc in named:
        acc.set_totals(all_reduce_sum(acc.totals()))
    if not s2ef:
        return SplitResult(named[0].compute(), named[1].compute(), None)
    results = []
    for acc in (model, mean, composition):
        acc.set_totals(all_reduce_sum(acc.totals()))
        results.append(acc.compute())
    for acc, row in zip(stress_acc, results, strict=False):
        acc.set_totals(all_reduce_sum(acc.totals()))
        row.update(acc.compute())
    for acc, row in zip(named, results, strict=False):
        row.update(acc.compute())
    return SplitResult(results[0], results[1], results[2] if has_refs else None, parity)


evaluate_split = deprecated_alias(score_split, "eqv2.train.evaluation.evaluate_split")
