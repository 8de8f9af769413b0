import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.nn.segment import segment_softmax, segment_sum


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_segment_softmax_matches_per_group_softmax(num_edges, num_nodes, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_edges, 3, generator=g, dtype=torch.float64) * 10
    index = torch.randint(0, num_nodes, (num_edges,), generator=g)
    out = segment_softmax(logits, index, num_nodes)
    for node in range(num_nodes):
        mask = index == node
        if mask.any():
            torch.testing.assert_close(
                out[mask], torch.softmax(logits[mask], dim=0), rtol=0, atol=1e-14
            )


def test_segment_softmax_is_shift_invariant_and_stable():
    logits = torch.tensor([[1000.0], [1001.0], [-1000.0]], dtype=torch.float64)
    index = torch.tensor([0, 0, 1])
    out = segment_softmax(logits, index, 2)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:2].sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(out[2, 0], torch.tensor(1.0, dtype=torch.float64))


def test_segment_sum_leaves_empty_segments_zero():
    values = torch.arange(6.0).view(3, 2)
    out = segment_sum(values, torch.tensor([2, 0, 2]), 4)
    torch.testing.assert_close(out, torch.tensor([[2.0, 3.0], [0, 0], [4.0, 6.0], [0, 0]]))
