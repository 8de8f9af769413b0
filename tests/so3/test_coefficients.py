"""CoefficientLayout: the one object layers ask about a (lmax, mmax) layout."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eqv2.so3 import (
    CoefficientLayout,
    degree_order,
    m_major_index,
    num_coefficients,
    s2_grid_matrices,
    truncated_index,
)

layouts = st.integers(0, 8).flatmap(lambda l: st.tuples(st.just(l), st.integers(0, l)))


@given(layouts)
def test_sizes_and_indices_agree_with_the_layout_functions(lm):
    lmax, mmax = lm
    layout = CoefficientLayout(lmax, mmax)
    assert layout.num_coefficients == (lmax + 1) ** 2
    assert layout.num_edge_coefficients == num_coefficients(lmax, mmax)
    assert layout.order_sizes[0] + 2 * sum(layout.order_sizes[1:]) == layout.num_edge_coefficients
    assert torch.equal(layout.degree_index(), degree_order(lmax)[0])
    assert torch.equal(layout.m_major_index(), m_major_index(lmax, mmax))
    assert torch.equal(layout.edge_degree_index(), degree_order(lmax)[0][m_major_index(lmax, mmax)])


def test_small_case():
    layout = CoefficientLayout(2, 1)
    assert layout.order_sizes == (3, 2)
    assert layout.edge_degree_index().tolist() == [0, 1, 2, 1, 2, 1, 2]
    assert CoefficientLayout(3) == CoefficientLayout(3, 3)  # mmax defaults to lmax
    assert len({CoefficientLayout(2, 1), CoefficientLayout(2, 1)}) == 1  # a hashable value


@pytest.mark.parametrize("bad", [(2, 3), (2, -1), (-1, 0)])
def test_bad_layout_names_the_rule(bad):
    with pytest.raises(ValueError, match="0 <= mmax <= lmax"):
        CoefficientLayout(*bad)


def test_edge_grid_is_the_reference_grid_in_m_major_order():
    lmax, mmax, res = 4, 2, 10
    layout = CoefficientLayout(lmax, mmax)
    to_grid, from_grid = s2_grid_matrices(lmax, mmax, resolution=res)
    grid = layout.edge_grid(res)
    # column k (m-major) is column j of the l-major truncated grid for the same coefficient
    kept = truncated_index(lmax, mmax).tolist()
    column = [kept.index(i) for i in m_major_index(lmax, mmax).tolist()]
    assert torch.equal(grid.to_grid, to_grid.reshape(res * res, -1)[:, column])
    assert torch.equal(grid.from_grid, from_grid.reshape(res * res, -1)[:, column].T)


def test_node_grid_is_the_full_grid():
    layout = CoefficientLayout(3, 1)
    to_grid, from_grid = s2_grid_matrices(3, 3, resolution=8)
    grid = layout.node_grid(8)
    assert torch.equal(grid.to_grid, to_grid.reshape(64, 16))
    assert torch.equal(grid.from_grid, from_grid.reshape(64, 16).T)


def test_grids_are_exact_casts_cached_per_dtype():
    """Whatever dtype a model went through, float64 grids are the float64 masters."""
    layout = CoefficientLayout(3, 2)
    low = layout.edge_grid(None, torch.float32)
    assert low.to_grid.dtype == torch.float32
    assert torch.equal(low.to_grid, layout.edge_grid().to_grid.float())
    assert layout.edge_grid(None, torch.float32) is low  # cached
    assert layout.node_grid(None, torch.float64).to_grid.dtype == torch.float64
