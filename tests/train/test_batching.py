"""Atom-balanced batches and their split among processes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.train.batching import atom_balanced_batches, epoch_order, split_batch

sizes = st.lists(st.integers(1, 40), min_size=1, max_size=30)


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert (epoch_order(10, 1, 2) == epoch_order(10, 1, 2)).all()
    assert sorted(epoch_order(10, 1, 2)) == list(range(10))
    assert not (epoch_order(10, 1, 2) == epoch_order(10, 1, 3)).all()


@settings(max_examples=60, deadline=None)
@given(natoms=sizes, max_atoms=st.integers(1, 80), min_structures=st.integers(1, 4))
def test_batches_cover_the_order_with_enough_structures(natoms, max_atoms, min_structures):
    order = np.random.default_rng(len(natoms)).permutation(len(natoms))
    if len(natoms) < min_structures:
        with pytest.raises(ValueError, match="cannot give each of"):
            atom_balanced_batches(order, natoms, max_atoms, min_structures=min_structures)
        return
    batches = atom_balanced_batches(order, natoms, max_atoms, min_structures=min_structures)
    assert [i for b in batches for i in b] == list(order)
    assert all(len(b) >= min_structures for b in batches)
    for b in batches[:-1]:  # closed early only when full (the last may have absorbed a tail)
        assert len(b) == min_structures or sum(natoms[i] for i in b) <= max_atoms
    if min_structures == 1:
        assert all(len(b) == 1 or sum(natoms[i] for i in b) <= max_atoms for b in batches)


def test_one_process_batches_are_unchanged_by_the_minimum():
    natoms = [5, 5, 5, 5, 5]
    assert atom_balanced_batches(range(5), natoms, 10) == [[0, 1], [2, 3], [4]]
    assert atom_balanced_batches(range(5), natoms, 10, min_structures=2) == [[0, 1], [2, 3, 4]]
    assert atom_balanced_batches(range(5), natoms, 100, max_structures=2) == [[0, 1], [2, 3], [4]]


@settings(max_examples=60, deadline=None)
@given(natoms=sizes, parts=st.integers(1, 5))
def test_split_is_a_balanced_partition_in_batch_order(natoms, parts):
    batch = list(np.random.default_rng(parts).permutation(len(natoms)))
    shares = split_batch(batch, natoms, parts)
    assert len(shares) == parts
    assert sorted(i for s in shares for i in s) == sorted(batch)
    for share in shares:  # each keeps the batch's order
        assert share == [i for i in batch if i in share]
    if len(batch) >= parts:
        assert all(shares)
        loads = [sum(natoms[i] for i in s) for s in shares]
        assert max(loads) - min(loads) <= max(natoms)  # greedy largest-first bound


def test_split_examples():
    assert split_batch([7, 3, 5], {7: 10, 3: 4, 5: 6}, 2) == [[7], [3, 5]]
    with pytest.raises(ValueError, match="num_parts=0"):
        split_batch([1], [1, 1], 0)
