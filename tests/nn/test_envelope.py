"""Cut-off envelopes: values, vanishing derivatives at the cut-off, config errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.nn.envelope import PolynomialEnvelope, make_envelope

F64 = torch.float64


def test_polynomial_values_and_range():
    env = PolynomialEnvelope(cutoff=4.0, p=5)
    r = torch.linspace(0.0, 6.0, 601, dtype=F64)
    w = env(r)
    assert w[0] == 1.0
    assert ((w >= 0) & (w <= 1)).all()
    assert (w[r >= 4.0] == 0).all() and (w[r < 3.999] > 0).all()
    assert (w[1:].diff() <= 1e-15).all()  # non-increasing


@pytest.mark.parametrize("p", [1, 3, 5, 8])
def test_first_two_derivatives_vanish_at_the_cutoff(p):
    env = PolynomialEnvelope(cutoff=5.0, p=p)
    r = torch.tensor([5.0 - 1e-9, 5.0, 5.0 + 1e-3], dtype=F64, requires_grad=True)
    (d1,) = torch.autograd.grad(env(r).sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert d1.abs().max() < 1e-12 and d2.abs().max() < 1e-6
    # and a real slope inside, so the test can fail
    inside = torch.tensor([4.0], dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(env(inside).sum(), inside)
    assert g.abs() > 1e-3


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.999), st.integers(1, 8))
def test_polynomial_formula(x, p):
    env = PolynomialEnvelope(cutoff=2.0, p=p)
    want = (
        1
        - (p + 1) * (p + 2) / 2 * x**p
        + p * (p + 2) * x ** (p + 1)
        - p * (p + 1) / 2 * x ** (p + 2)
    )
    got = env(torch.tensor([2.0 * x], dtype=F64)).item()
    assert abs(got - want) < 1e-12


def test_make_envelope_from_config_and_errors():
    assert make_envelope(None, 5.0) is None
    env = make_envelope({"type": "polynomial", "p": 5}, 5.0)
    assert env == PolynomialEnvelope(cutoff=5.0, p=5)
    with pytest.raises(ValueError, match="choose one of"):
        make_envelope({"type": "cosine"}, 5.0)
    with pytest.raises(ValueError, match="'type' key"):
        make_envelope("polynomial", 5.0)
    with pytest.raises(ValueError, match="bad options"):
        make_envelope({"type": "polynomial", "q": 5}, 5.0)
    with pytest.raises(ValueError, match="p=0"):
        make_envelope({"type": "polynomial", "p": 0}, 5.0)
