"""The training input pipeline: worker processes read, label and batch structures.

A ``torch.utils.data.DataLoader`` runs over `StepPlan` items (`eqv2.train.sampler`): for each
one, a worker reads the plan's structures from the dataset, checks their labels, builds their
neighbour lists and collates them into graphs with energy and force targets (`StepBatch`). The
main process only moves finished batches to the device and trains. Labels are computed here,
per batch: the training set is never labelled (or held) as a whole.

* ``num_workers`` worker processes (0: the main process does the work), each ``prefetch_factor``
  steps ahead, kept alive for the whole run (persistent workers);
* pinned host memory on CUDA, so the copy to the GPU can overlap compute;
* deterministic: the plans and the batches do not depend on the number of workers, and the
  loader draws its worker seeds from its own generator (seeded by the run's seed and the
  process's rank), never from the global torch stream that dropout uses, so a resumed run
  continues bit for bit with or without workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from eqv2.data import ListDataset, Structure
from eqv2.data.errors import DataError
from eqv2.data.targets import read_displacement_target, read_scalar_target
from eqv2.graph import batch_structures
from eqv2.train.sampler import StepPlan
from eqv2.train.worker_init import WorkerInit

if TYPE_CHECKING:
    from eqv2.train.targets_spec import TargetSpec

__all__ = [
    "GraphSettings",
    "LabelledBatch",
    "LoaderConfig",
    "ReadFailure",
    "StepBatch",
    "STRESS_LABELS",
    "StepReader",
    "TrainingDataset",
    "as_dataset",
    "identity_collate",
    "iterate",
    "make_loader",
]


class TrainingDataset(Protocol):
    """What training reads: random access to `Structure` records and their sizes (an index)."""

    natoms: np.ndarray

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Structure: ...


def as_dataset(data: Any, name: str = "dataset") -> TrainingDataset:
    """``data`` as a dataset: a dataset (`eqv2.data.open_dataset`) is returned as it is; a
    list of ``ase.Atoms`` or `Structure` records becomes an `eqv2.data.ListDataset`."""
    if hasattr(data, "natoms") and hasattr(data, "__getitem__"):
        return data
    return ListDataset(list(data))


@dataclass
class LoaderConfig:
    """How batches are prepared (the ``data`` section's pipeline keys).

    ``num_workers``: processes that read and batch structures (0: the training process does
    it between steps). ``prefetch_factor``: steps each worker prepares ahead. ``pin_memory``:
    page-locked batches for faster host-to-GPU copies (``None``: on CUDA only).
    """

    num_workers: int = 2
    prefetch_factor: int = 2
    pin_memory: bool | None = None

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers}: must be 0 or more.")
        if self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor={self.prefetch_factor}: must be at least 1.")


@dataclass(frozen=True)
class GraphSettings:
    """How a model wants its graphs built (cut-off, neighbour cap, dtype, element range)."""

    cutoff: float
    max_neighbors: int | None
    strict: bool
    dtype: torch.dtype
    max_atomic_number: int | None

    @classmethod
    def of(cls, potential: Any) -> GraphSettings:
        """The settings of an `eqv2.model.Potential`."""
        c = potential.config
        return cls(
            c.max_radius,
            c.max_neighbors,
            c.enforce_max_neighbors_strictly,
            potential.dtype,
            c.max_num_elements - 1,
        )


def _map_tensors(obj: Any, fn: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_tensors(v, fn) for v in obj]
    return obj


@dataclass
class LabelledBatch:
    """Structures batched into one graph, with their labels.

    ``indices``: dataset indices; ``graph``: `eqv2.graph.batch_structures`'s tensors;
    ``energy`` (B,) float64 eV; ``reference`` (B,) float64: the sum of the element references
    of each structure's atoms (0 without references), so ``energy - reference`` is what the
    model learns; ``forces`` (N, 3) float64 eV/Å; ``stress`` (B, 3, 3) float64 eV/Å³ (ASE's
    sign) when the reader reads stress labels, NaN for a structure without one, else None;
    ``targets``: each named target, (B,) float64 in its unit, or (N, 3) for a per-atom
    displacement target. A reader that trains named
    targets only leaves ``energy`` and ``forces`` None.
    """

    indices: list[int]
    graph: dict[str, torch.Tensor]
    energy: torch.Tensor | None
    reference: torch.Tensor
    forces: torch.Tensor | None
    stress: torch.Tensor | None = None
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    def apply(self, fn: Any) -> LabelledBatch:
        """A copy with ``fn`` applied to every tensor."""
        return LabelledBatch(
            **{f.name: _map_tensors(getattr(self, f.name), fn) for f in fields(self)}
        )

    def to(self, device: torch.device) -> LabelledBatch:
        """The batch on ``device`` (asynchronous copies from pinned memory)."""
        if device.type == "cpu":
            return self
        return self.apply(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> LabelledBatch:
        """Called by the DataLoader's pinning thread."""
        return self.apply(lambda t: t.pin_memory())

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A worker hands batches to the training process by pickling them. Torch's own tensor
        # pickling (DataLoader workers: one shared-memory segment per tensor) costs the
        # *training* process ~0.3 ms a tensor to map back in; numpy arrays travel through the
        # pipe as plain bytes and torch.from_numpy wraps them without a copy.
        state = {
            f.name: _map_tensors(getattr(self, f.name), torch.Tensor.numpy) for f in fields(self)
        }
        return _labelled_from_numpy, (state,)


def _labelled_from_numpy(state: dict[str, Any]) -> LabelledBatch:
    def tensor(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return torch.from_numpy(obj)
        if isinstance(obj, dict):
            return {k: tensor(v) for k, v in obj.items()}
        return obj

    return LabelledBatch(**{k: tensor(v) for k, v in state.items()})


@dataclass
class StepBatch:
    """One process's batches of one step (`StepPlan` with the data read and collated)."""

    micro: list[LabelledBatch]
    num_structures: int
    epoch: int
    position: int
    indices: list[int] = field(default_factory=list)

    def pin_memory(self) -> StepBatch:
        """Called by the DataLoader's pinning thread."""
        return StepBatch(
            [m.pin_memory() for m in self.micro],
            self.num_structures,
            self.epoch,
            self.position,
            self.indices,
        )


#: What a `StepReader` does with stress labels: leave them, read them where present (NaN
#: where absent: evaluation), or require them (an error naming the structure: stress training).
STRESS_LABELS = ("ignore", "read", "require")


class StepReader:
    """Reads and batches the structures of a `StepPlan` (runs in DataLoader workers).

    ``references``: per-element reference energies (119,) or ``None``; ``name``: the dataset's
    name in messages; ``stress``: one of `STRESS_LABELS`; ``targets``: named scalar targets
    to read (`eqv2.train.targets_spec.TargetSpec`, each required in every record);
    ``s2ef``: whether energy and forces are read (and required). Picklable when the dataset
    is (datasets reopen files per process).
    """

    def __init__(
        self,
        dataset: TrainingDataset,
        graph: GraphSettings,
        references: np.ndarray | None = None,
        name: str = "dataset",
        stress: str = "ignore",
        targets: tuple[TargetSpec, ...] = (),
        s2ef: bool = True,
    ) -> None:
        if stress not in STRESS_LABELS:
            raise ValueError(f"stress={stress!r}: choose one of {STRESS_LABELS}.")
        self.dataset = dataset
        self.graph = graph
        self.references = None if references is None else np.asarray(references, np.float64)
        self.name = name
        self.stress = stress if s2ef else "ignore"
        self.targets = tuple(targets)
        self.s2ef = s2ef
        labels = ("energy", "forces") if s2ef else ()
        self._required = labels + (("stress",) if self.stress == "require" else ())

    def _read(self, index: int) -> Structure:
        try:
            return self.dataset[index].validate(self._required)
        except DataError as exc:
            why = " (the stress loss is on)" if self.stress == "require" else ""
            raise DataError(f"{self.name} structure {index}{why}: {exc}") from exc

    def batch(self, indices: Iterable[int]) -> LabelledBatch:
        """The structures ``indices`` as one labelled graph batch (on the CPU)."""
        indices = [int(i) for i in indices]
        structures = [self._read(i) for i in indices]
        g = self.graph
        graph = batch_structures(
            structures,
            cutoff=g.cutoff,
            max_neighbors=g.max_neighbors,
            strict=g.strict,
            dtype=g.dtype,
            max_atomic_number=g.max_atomic_number,
        )
        refs = self.references
        reference = [0.0 if refs is None else float(refs[s.numbers].sum()) for s in structures]
        stress = None
        if self.stress != "ignore":
            nan = np.full((3, 3), np.nan)
            stress = torch.from_numpy(
                np.stack([nan if s.stress is None else s.stress for s in structures])
            )
        targets = {}
        for t in self.targets:
            values = [self._target(s, i, t) for s, i in zip(structures, indices, strict=True)]
            stacked = np.concatenate(values) if t.per_atom else np.asarray(values)
            targets[t.name] = torch.from_numpy(stacked.astype(np.float64))
        return LabelledBatch(
            indices,
            graph,
            torch.tensor([s.energy for s in structures], dtype=torch.float64)
            if self.s2ef
            else None,
            torch.tensor(reference, dtype=torch.float64),
            torch.from_numpy(np.concatenate([s.forces for s in structures])) if self.s2ef else None,
            stress,
            targets,
        )

    def _target(self, structure: Structure, index: int, target: TargetSpec) -> Any:
        try:
            if target.per_atom:
                return read_displacement_target(structure, target.read_key, target.name)
            return read_scalar_target(structure, target.read_key, target.scale, target.name)
        except DataError as exc:
            raise DataError(f"{self.name} structure {index}: {exc}") from exc

    def __getitem__(self, plan: StepPlan) -> StepBatch | ReadFailure:
        try:
            micro = [self.batch(m) for m in plan.micro]
        except DataError as exc:  # handed to the main process whole (see ReadFailure)
            return ReadFailure(exc)
        return StepBatch(micro, plan.num_structures, plan.epoch, plan.position, plan.indices)


@dataclass
class ReadFailure:
    """A data error met in a worker, returned instead of raised: the DataLoader would re-raise
    it with the worker's traceback pasted into the message; `iterate` raises it as it was."""

    error: DataError


def iterate(loader: Iterable[Any]) -> Iterator[Any]:
    """The loader's items; a `ReadFailure` is raised as its original `DataError`."""
    for item in loader:
        if isinstance(item, ReadFailure):
            raise item.error
        yield item


def identity_collate(item: Any) -> Any:
    """The DataLoader's collate step when the dataset's items are already batches."""
    return item


def make_loader(
    reader: StepReader,
    sampler: Iterable[Any],
    config: LoaderConfig,
    device: torch.device,
    seed: int,
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``reader[plan]`` for each plan of ``sampler``, in order.

    ``seed`` seeds the loader's own generator (worker seeds); pass one per process.
    """
    workers = config.num_workers
    pin = device.type == "cuda" if config.pin_memory is None else config.pin_memory
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"prefetch_factor": config.prefetch_factor, "persistent_workers": True}
    return torch.utils.data.DataLoader(
        reader,  # type: ignore[arg-type]  # a map-style dataset keyed by plans
        batch_size=None,
        sampler=sampler,  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=identity_collate,
        pin_memory=pin and torch.cuda.is_available(),
        worker_init_fn=WorkerInit(os.getpid()),
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )
