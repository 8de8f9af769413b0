"""The batch a DataLoader worker hands to the training process."""

from __future__ import annotations

import pickle

import numpy as np
import torch
from ase.build import fcc111

from eqv2.data import ListDataset, from_atoms
from eqv2.train.loader import GraphSettings, StepReader


def _reader() -> StepReader:
    slabs = []
    for k in range(3):
        slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
        slab.rattle(0.05, seed=k)
        s = from_atoms(slab)
        s.energy = -1.0 - k
        s.forces = np.random.default_rng(k).normal(size=(len(slab), 3))
        slabs.append(s)
    graph = GraphSettings(5.0, 12, False, torch.float32, 100)
    return StepReader(ListDataset(slabs), graph, references=np.linspace(0.0, 1.0, 119))


def test_batch_round_trips_through_pickle_as_plain_arrays():
    batch = _reader().batch([2, 0])
    data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    # torch's tensor pickling (shared memory per tensor in workers) is not used
    assert b"_rebuild_tensor" not in data and b"torch" not in data
    back = pickle.loads(data)
    assert back.indices == [2, 0]
    for name in ("energy", "reference", "forces"):
        want, got = getattr(batch, name), getattr(back, name)
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert back.graph.keys() == batch.graph.keys()
    for key, want in batch.graph.items():
        got = back.graph[key]
        assert isinstance(got, torch.Tensor) and got.dtype == want.dtype, key
        assert torch.equal(got, want), key
    back.forces.add_(1.0)  # writable, like the worker's own tensors
