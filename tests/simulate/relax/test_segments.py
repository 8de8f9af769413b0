"""Segments: per-structure reductions equal per-structure numpy on each slice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.simulate.relax.segments import Segments


@settings(max_examples=50, deadline=None)
@given(counts=st.lists(st.integers(1, 7), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_reductions_match_slices(counts, seed):
    rng = np.random.default_rng(seed)
    seg = Segments(counts)
    a, b = rng.normal(size=(seg.n_rows, 3)), rng.normal(size=(seg.n_rows, 3))
    keep = rng.random(len(counts)) < 0.5
    pieces = list(zip(seg.split(a), seg.split(b), strict=True))
    assert [len(p) for p, _ in pieces] == counts and len(seg) == len(counts)
    np.testing.assert_allclose(seg.dot(a, b), [np.vdot(p, q) for p, q in pieces], atol=1e-12)
    np.testing.assert_allclose(seg.sum(a[:, 0]), [p[:, 0].sum() for p, _ in pieces], atol=1e-12)
    np.testing.assert_array_equal(
        seg.max_norm(a), [np.linalg.norm(p, axis=1).max() for p, _ in pieces]
    )
    np.testing.assert_array_equal(seg.expand(np.arange(len(counts)))[:, 0], seg.index)
    np.testing.assert_array_equal(
        a[seg.rows(keep)],
        np.concatenate([a[:0]] + [p for (p, _), k in zip(pieces, keep, strict=True) if k]),
    )


def test_empty_structures_are_refused():
    with pytest.raises(ValueError, match="at least one atom"):
        Segments([3, 0, 2])
