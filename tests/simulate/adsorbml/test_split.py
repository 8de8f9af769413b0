"""``split_relaxer``: chunks shared out by rank, results gathered back in input order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ase import Atoms
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.simulate.adsorbml.split import split_relaxer


def _structures(n):
    return [Atoms("H", positions=[[float(i), 0.0, 0.0]]) for i in range(n)]


class Recorder:
    """A relaxer that remembers its calls and answers x-position as the energy."""

    def __init__(self):
        self.calls: list[list[float]] = []

    def __call__(self, structures):
        xs = [float(a.positions[0, 0]) for a in structures]
        self.calls.append(xs)
        return [SimpleNamespace(atoms=a, energy=x, converged=True, steps=0, error=None)
                for a, x in zip(structures, xs, strict=True)]  # fmt: skip


class _Gathered(Exception):
    """Stops a rank at its exchange, carrying what it would send."""


def _own_part(rank, n, chunk, world):
    """What ``rank`` relaxes and sends, and its relaxer calls."""
    rec = Recorder()

    def gather(mine):
        raise _Gathered(mine)

    with pytest.raises(_Gathered) as stopped:
        split_relaxer(rec, chunk_size=chunk, rank=rank, world_size=world, gather=gather)(
            _structures(n)
        )
    return stopped.value.args[0], rec.calls


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 23), chunk=st.integers(1, 7), world=st.integers(1, 4))
def test_ranks_share_the_chunks_and_all_get_every_result_in_order(n, chunk, world):
    parts, calls = zip(*(_own_part(r, n, chunk, world) for r in range(world)), strict=True)
    relaxed = [x for rank_calls in calls for xs in rank_calls for x in xs]
    assert sorted(relaxed) == [float(i) for i in range(n)]  # every structure once, somewhere
    assert all(len(xs) <= chunk for rank_calls in calls for xs in rank_calls)
    for rank in range(world):  # given the others' parts, every rank returns all, in order
        others = [*parts[:rank], None, *parts[rank + 1 :]]

        def gather(mine, others=others, rank=rank):
            return [mine if r == rank else p for r, p in enumerate(others)]

        out = split_relaxer(Recorder(), chunk_size=chunk, rank=rank, world_size=world,
                            gather=gather)(_structures(n))  # fmt: skip
        assert [r.energy for r in out] == [float(i) for i in range(n)]


def test_chunks_not_processes_decide_the_batches():
    rec = Recorder()
    split_relaxer(rec, chunk_size=3)(_structures(7))
    assert rec.calls == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0]]


def test_a_chunk_no_process_returned_is_an_error():
    run = split_relaxer(Recorder(), chunk_size=2, rank=0, world_size=2, gather=lambda m: [m, {}])
    with pytest.raises(RuntimeError, match=r"chunks \[1\] came back from no process"):
        run(_structures(4))


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(chunk_size=0), "chunk_size must be an int >= 1"),
    (dict(chunk_size=2, rank=2, world_size=2), "rank 2 is outside 0..1"),
])  # fmt: skip
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        split_relaxer(Recorder(), **kwargs)
