"""Which structures each process trains on at each step: the epoch plan, sharded and balanced.

Every process computes the same plan from the dataset's size index (``natoms``), the seed and
the epoch, without communicating and without reading a structure:

1. the epoch's order is a permutation that depends only on ``(seed, epoch)``;
2. it is cut into *global* batches by atom budget (`atom_balanced_batches`), each with at least
   one structure per process; the config's batch limits are these global batches;
3. each global batch is shared among the processes by atoms (`split_batch`: largest first, to
   the least loaded process), so every process gets a disjoint shard of similar cost, and the
   shards of an epoch cover the epoch exactly once;
4. with gradient accumulation each process's share is split again, by atoms, into
   micro-batches that are run one after the other before one optimiser step.

`StepSampler` yields one `StepPlan` per optimisation step, from any (epoch, position) on and
across epoch boundaries, so a resumed run continues with exactly the plans an uninterrupted run
would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from eqv2.train.batching import atom_balanced_batches, epoch_order, split_batch


@dataclass(frozen=True)
class StepPlan:
    """One process's part of one optimisation step.

    ``micro``: this process's structure indices, one list per micro-batch (empty lists are
    left out); ``num_structures``: structures in the global batch (the energy-loss
    denominator); ``epoch`` and ``position``: where the global batch sits in the epoch plan.
    """

    micro: tuple[tuple[int, ...], ...]
    num_structures: int
    epoch: int
    position: int

    @property
    def indices(self) -> list[int]:
        """This process's structure indices of the step, micro-batches concatenated."""
        return [i for batch in self.micro for i in batch]


@dataclass(frozen=True)
class EpochPlan:
    """The global batches of each epoch, and each process's share of them.

    ``natoms``: atoms per structure (the dataset's index). ``max_atoms`` /
    ``max_structures``: limits of a global batch. ``world_size`` processes share each global
    batch; ``accumulation`` micro-batches make up one process's share.
    """

    natoms: np.ndarray
    seed: int
    max_atoms: int
    max_structures: int | None = None
    world_size: int = 1
    accumulation: int = 1

    def __post_init__(self) -> None:
        if self.accumulation < 1:
            raise ValueError(f"grad_accumulation={self.accumulation}: must be at least 1.")
        if len(self.natoms) == 0:
            raise ValueError("the training set is empty: nothing to train on.")

    def global_batches(self, epoch: int, world_size: int | None = None) -> list[list[int]]:
        """The epoch's global batches (the same on every process)."""
        return atom_balanced_batches(
            epoch_order(len(self.natoms), self.seed, epoch),
            self.natoms,
            self.max_atoms,
            self.max_structures,
            min_structures=world_size or self.world_size,
        )

    def share(self, batch: Sequence[int], rank: int) -> tuple[tuple[int, ...], ...]:
        """Process ``rank``'s micro-batches of the global batch ``batch``."""
        mine = split_batch(batch, self.natoms, self.world_size)[rank]
        micro = split_batch(mine, self.natoms, self.accumulation)
        return tuple(tuple(m) for m in micro if m)


class StepSampler:
    """The `StepPlan` of every step for process ``rank``, from ``(epoch, position)`` on, for ever.

    Used as the sampler of a ``DataLoader`` with ``batch_size=None``: each plan goes to a
    worker, which reads and batches its structures. `set_start` moves the start (a resumed run).
    """

    def __init__(self, plan: EpochPlan, rank: int = 0, epoch: int = 0, position: int = 0) -> None:
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank={rank}: must be in [0, {plan.world_size}).")
        self.plan = plan
        self.rank = rank
        self.set_start(epoch, position)

    def set_start(self, epoch: int, position: int) -> None:
        """Start the next iteration at global batch ``position`` of ``epoch`` (a position at
        or past the end of the epoch starts the next epoch)."""
        self.epoch, self.position = int(epoch), int(position)

    def __iter__(self) -> Iterator[StepPlan]:
        epoch, position = self.epoch, self.position
        while True:
            batches = self.plan.global_batches(epoch)
            for k in range(position, len(batches)):
                micro = self.plan.share(batches[k], self.rank)
                yield StepPlan(micro, len(batches[k]), epoch, k)
            epoch, position = epoch + 1, 0


def evaluation_plans(
    indices: Sequence[int], rank: int, world_size: int, batch_structures: int
) -> list[StepPlan]:
    """Process ``rank``'s evaluation batches of ``indices``: every ``world_size``-th structure,
    ``batch_structures`` at a time (the processes' shares are disjoint and cover ``indices``)."""
    mine = [int(i) for i in indices][rank::world_size]
    return [
        StepPlan((tuple(mine[k : k + batch_structures]),), 0, 0, k // batch_structures)
        for k in range(0, len(mine), batch_structures)
    ]
