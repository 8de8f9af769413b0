"""One gather builds the attention message: the same tensor as cat((x[src], x[dst]), dim=2)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.nn.context import message_rows


@settings(max_examples=25, deadline=None)
@given(
    num_nodes=st.integers(1, 6),
    num_edges=st.integers(0, 12),
    num_coeff=st.integers(1, 9),
    channels=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_one_gather_equals_two_gathers_and_a_concatenation(
    num_nodes, num_edges, num_coeff, channels, seed
):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, num_coeff, channels, generator=gen, dtype=torch.float64)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    dst = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    rows = message_rows(src, dst, num_coeff)
    assert rows.shape == (2 * num_coeff * num_edges,)
    got = x.reshape(-1, channels).index_select(0, rows).view(num_edges, num_coeff, 2 * channels)
    expected = torch.cat((x[src], x[dst]), dim=2)
    assert torch.equal(got, expected)


def test_gradient_is_the_sum_over_both_ends():
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    src, dst = torch.tensor([0, 2, 2]), torch.tensor([1, 1, 0])
    rows = message_rows(src, dst, 4)
    upstream = torch.randn(3, 4, 4, dtype=torch.float64)
    (got,) = torch.autograd.grad(x.reshape(-1, 2).index_select(0, rows).view(3, 4, 4), x, upstream)
    (expected,) = torch.autograd.grad(torch.cat((x[src], x[dst]), dim=2), x, upstream)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
