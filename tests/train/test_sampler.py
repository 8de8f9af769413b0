"""Step plans: every epoch shared disjointly among processes, balanced, resumable anywhere."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.train.sampler import EpochPlan, StepSampler, evaluation_plans


def _epoch(plan: EpochPlan, rank: int, epoch: int) -> list:
    sampler = StepSampler(plan, rank, epoch, 0)
    return list(itertools.takewhile(lambda p: p.epoch == epoch, iter(sampler)))


@settings(max_examples=25, deadline=None)
@given(
    natoms=st.lists(st.integers(1, 60), min_size=4, max_size=60),
    world=st.integers(1, 4),
    accumulation=st.integers(1, 3),
    max_atoms=st.integers(1, 200),
    seed=st.integers(0, 5),
)
def test_ranks_get_disjoint_shards_covering_each_epoch(natoms, world, accumulation, max_atoms,
                                                       seed):  # fmt: skip
    natoms = np.array(natoms)
    if len(natoms) < world:
        return
    plan = EpochPlan(natoms, seed, max_atoms, None, world, accumulation)
    for epoch in (0, 1):
        per_rank = [_epoch(plan, rank, epoch) for rank in range(world)]
        steps = {len(p) for p in per_rank}
        assert len(steps) == 1  # every process takes the same number of steps
        seen = [i for plans in per_rank for p in plans for i in p.indices]
        assert sorted(seen) == list(range(len(natoms)))  # disjoint and covering
        for step in zip(*per_rank, strict=True):
            assert len({p.num_structures for p in step}) == 1
            assert sum(len(p.indices) for p in step) == step[0].num_structures
            assert all(p.indices for p in step)  # no process idles
            assert all(len(p.micro) <= accumulation for p in step)


def test_shards_are_balanced_by_atoms():
    rng = np.random.default_rng(0)
    natoms = rng.integers(20, 200, size=400)
    plan = EpochPlan(natoms, 0, max_atoms=4000, world_size=4)
    loads = np.array([[natoms[p.indices].sum() for p in _epoch(plan, r, 0)] for r in range(4)])
    spread = (loads.max(axis=0) - loads.min(axis=0)) / loads.mean(axis=0)
    assert np.median(spread) < 0.1, spread  # largest-first greedy: within one structure


def test_start_anywhere_continues_the_same_sequence():
    natoms = np.arange(1, 31)
    plan = EpochPlan(natoms, 3, max_atoms=50, world_size=2, accumulation=2)
    straight = list(itertools.islice(iter(StepSampler(plan, 1)), 40))
    for k in (0, 5, 17, 39):
        p = straight[k]
        later = list(itertools.islice(iter(StepSampler(plan, 1, p.epoch, p.position)), 40 - k))
        assert later == straight[k:]
    # a position past the end of an epoch starts the next one
    first = straight[0]
    end = len(plan.global_batches(0))
    assert next(iter(StepSampler(plan, 1, 0, end))) == next(iter(StepSampler(plan, 1, 1, 0)))
    assert first.epoch == 0 and straight[-1].epoch > 0  # the sampler crosses epochs


def test_evaluation_plans_share_every_structure_once():
    plans = [evaluation_plans(range(11), r, 3, 2) for r in range(3)]
    seen = sorted(i for per in plans for p in per for i in p.indices)
    assert seen == list(range(11))
    assert all(len(p.indices) <= 2 for per in plans for p in per)


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="grad_accumulation=0"):
        EpochPlan(np.ones(3, int), 0, 10, accumulation=0)
    with pytest.raises(ValueError, match="training set is empty"):
        EpochPlan(np.zeros(0, int), 0, 10)
    with pytest.raises(ValueError, match="cannot give each of 4 processes one"):
        EpochPlan(np.ones(3, int), 0, 10, world_size=4).global_batches(0)
    with pytest.raises(ValueError, match=r"rank=2: must be in \[0, 2\)"):
        StepSampler(EpochPlan(np.ones(3, int), 0, 10, world_size=2), rank=2)
