"""Layout maps: hand-written small cases and general properties."""

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from eqv2.so3 import (
    CoefficientLayout,
    degree_order,
    m_major_index,
    num_coefficients,
    rotate_back_rescale,
    truncated_index,
)

sizes = st.tuples(st.integers(0, 10), st.integers(0, 12))


def m_block_sizes(lmax: int, mmax: int) -> list[int]:
    """Consecutive m-major blocks: m = 0, then +m and -m for m = 1..min(mmax, lmax)."""
    orders = CoefficientLayout(lmax, min(mmax, lmax)).order_sizes
    return [orders[0]] + [n for n in orders[1:] for _ in "+-"]


def test_degree_order_lmax2():
    l, m = degree_order(2)
    assert l.tolist() == [0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert m.tolist() == [0, -1, 0, 1, -2, -1, 0, 1, 2]
    assert l.dtype == m.dtype == torch.long


def test_small_case_lmax2_mmax1():
    # l-major: 0:(0,0) 1:(1,-1) 2:(1,0) 3:(1,1) 4:(2,-2) 5:(2,-1) 6:(2,0) 7:(2,1) 8:(2,2)
    assert truncated_index(2, 1).tolist() == [0, 1, 2, 3, 5, 6, 7]
    # m=0 for l=0,1,2; +1 for l=1,2; -1 for l=1,2
    assert m_major_index(2, 1).tolist() == [0, 2, 6, 3, 7, 1, 5]
    assert m_block_sizes(2, 1) == [3, 2, 2]
    assert num_coefficients(2, 1) == 7
    s = rotate_back_rescale(2, 1)
    assert torch.allclose(s, torch.tensor([1.0] * 4 + [math.sqrt(5 / 3)] * 5, dtype=s.dtype))


def test_small_case_lmax3_mmax2():
    assert m_major_index(3, 2).tolist() == [0, 2, 6, 12, 3, 7, 13, 1, 5, 11, 8, 14, 4, 10]
    assert m_block_sizes(3, 2) == [4, 3, 3, 2, 2]


@given(sizes)
def test_layout_properties(lm):
    lmax, mmax = lm
    l, m = degree_order(lmax)
    assert torch.equal(l * l + m + l, torch.arange((lmax + 1) ** 2))
    trunc = truncated_index(lmax, mmax)
    order = m_major_index(lmax, mmax)
    K = num_coefficients(lmax, mmax)
    assert len(trunc) == len(order) == K == sum(m_block_sizes(lmax, mmax))
    assert torch.equal(trunc, torch.sort(order).values)  # same set, l-major order
    assert bool((m[trunc].abs() <= mmax).all())
    # m-major: blocks of constant m (0, +1, -1, +2, -2, ...), l increasing inside each block
    start = 0
    for b, size in enumerate(m_block_sizes(lmax, mmax)):
        want = 0 if b == 0 else ((b + 1) // 2) * (1 if b % 2 else -1)
        block = order[start : start + size]
        assert bool((m[block] == want).all())
        assert l[block].tolist() == list(range(abs(want), lmax + 1))
        start += size
    s = rotate_back_rescale(lmax, mmax)
    expect = torch.where(l > mmax, torch.sqrt((2 * l + 1) / (2.0 * mmax + 1)), 1.0)
    assert torch.allclose(s, expect.to(s.dtype))


def test_full_mmax_is_identity_order():
    assert torch.equal(truncated_index(4, 4), torch.arange(25))
    assert torch.equal(rotate_back_rescale(4, 4), torch.ones(25, dtype=torch.float64))
