import math

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


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_weighted_softmax_matches_its_formula(num_edges, num_nodes, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_edges, 3, generator=g, dtype=torch.float64) * 10
    weight = torch.rand(num_edges, generator=g, dtype=torch.float64)
    weight[torch.rand(num_edges, generator=g) < 0.2] = 0.0
    index = torch.randint(0, num_nodes, (num_edges,), generator=g)
    out = segment_softmax(logits, index, num_nodes, weight)
    for node in range(num_nodes):
        mask = index == node
        if mask.any():
            num = weight[mask, None] * (logits[mask] - logits[mask].max(0).values).exp()
            want = num / num.sum(0).clamp_min(1e-300)
            torch.testing.assert_close(out[mask], want, rtol=1e-12, atol=1e-14)
    assert (out[weight == 0] == 0).all()


def test_weighted_softmax_unit_weights_equal_plain():
    logits = torch.randn(10, 2, dtype=torch.float64)
    index = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2, 3])
    torch.testing.assert_close(
        segment_softmax(logits, index, 4, torch.ones(10, dtype=torch.float64)),
        segment_softmax(logits, index, 4),
        rtol=0,
        atol=1e-15,
    )


def test_weighted_softmax_stable_when_the_largest_logit_has_a_tiny_weight():
    # exp(z) overflows; the largest logit's weight e^-600 makes both edges count equally
    logits = torch.tensor([[1600.0], [1000.0], [3.0]], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([math.exp(-600.0), 1.0, 0.0], dtype=torch.float64)
    out = segment_softmax(logits, torch.tensor([0, 0, 1]), 2, weight)
    want = torch.tensor([0.5, 0.5, 0.0], dtype=out.dtype)
    torch.testing.assert_close(out[:, 0].detach(), want, rtol=0, atol=1e-12)
    out[:, 0].mul(torch.tensor([1.0, 2.0, 3.0], dtype=out.dtype)).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[2] == 0


def test_weighted_softmax_gradients_through_the_weight_are_finite_at_zero():
    logits = torch.tensor([[0.3], [1.0], [-0.5]], dtype=torch.float64)
    weight = torch.tensor([0.0, 1e-200, 0.7], dtype=torch.float64, requires_grad=True)
    out = segment_softmax(logits, torch.tensor([0, 0, 0]), 1, weight)
    (grad,) = torch.autograd.grad((out[:, 0] * torch.arange(3.0)).sum(), weight, create_graph=True)
    assert torch.isfinite(grad).all()
    (grad2,) = torch.autograd.grad(grad.sum(), weight)
    assert torch.isfinite(grad2).all()
