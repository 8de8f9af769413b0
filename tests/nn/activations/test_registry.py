"""The activation registry: fairchem's switches map onto names, variants equal the functions."""

from __future__ import annotations

import pytest
import torch

from eqv2.model import EquiformerV2, EquiformerV2Config
from eqv2.nn.activation import gate_activation, s2_activation, separable_s2_activation
from eqv2.nn.activations import (
    ACTIVATIONS,
    SphereActivation,
    attention_activation_name,
    ffn_activation_name,
    ffn_activation_names,
    make_activation,
    make_ffn_activation,
)
from eqv2.so3 import CoefficientLayout
from tests.nn.symmetry import features
from tests.tiny import tiny, tiny_config, tiny_graph

LAYOUT = CoefficientLayout(3)


@pytest.mark.parametrize(
    "gate, sep, grid, attention, ffn",
    [
        (False, True, False, "separable_s2", "separable_s2"),
        (False, False, False, "s2", "s2"),
        (True, True, False, "gate", "gate"),
        (True, False, False, "gate", "gate"),
        (False, True, True, "separable_s2", "separable_grid_mlp"),
        (True, True, True, "gate", "separable_grid_mlp"),
        (False, False, True, "s2", "grid_mlp"),
    ],
)
def test_fairchem_switches_map_to_names(gate, sep, grid, attention, ffn):
    assert attention_activation_name(gate, sep) == attention
    assert ffn_activation_name(gate, sep, grid) == ffn
    c = tiny_config(use_gate_act=gate, use_sep_s2_act=sep, use_grid_mlp=grid)
    assert (c.attention_activation, c.feed_forward_activation) == (attention, ffn)


def test_variants_equal_the_functions():
    grid = LAYOUT.node_grid(8)
    x, degree = features(4, 3, 5, seed=1), LAYOUT.degree_index()
    scalars = torch.randn(4, 5, dtype=torch.float64)
    gates = torch.randn(4, 3 * 5, dtype=torch.float64)
    torch.testing.assert_close(make_activation("s2", degree)(None, x, grid), s2_activation(x, grid))
    torch.testing.assert_close(
        make_activation("separable_s2", degree)(scalars, x, grid),
        separable_s2_activation(scalars, x, grid),
    )
    gate = make_activation("gate", degree)
    assert gate.num_scalars(5) == 15
    torch.testing.assert_close(gate(gates, x, grid), gate_activation(gates, x, degree[1:] - 1))


def test_explicit_names_override_the_switches_and_bad_names_are_refused():
    c = tiny_config(attn_activation="swiglu_s2", ffn_activation="swiglu_grid_mlp")
    assert (c.attention_activation, c.feed_forward_activation) == ("swiglu_s2", "swiglu_grid_mlp")
    with pytest.raises(ValueError, match="attn_activation='swiglu_grid_mlp'.*swiglu_s2"):
        EquiformerV2Config.from_dict(tiny(attn_activation="swiglu_grid_mlp"))
    with pytest.raises(ValueError, match="use_grid_mlp=True with ffn_activation='gate'"):
        EquiformerV2Config.from_dict(tiny(use_grid_mlp=True, ffn_activation="gate"))
    with pytest.raises(ValueError, match="activation 'relu'"):
        make_ffn_activation("relu", LAYOUT.degree_index())
    assert set(ACTIVATIONS) <= set(ffn_activation_names())


class _Cube(SphereActivation):
    """A test-only activation: x³ coefficient-wise on l = 0, identity elsewhere."""

    def forward(self, scalars, x, grid, differentiable_twice=False):
        return torch.cat((x[:, :1].pow(3), x[:, 1:]), dim=1)


def test_a_new_activation_is_one_line_in_the_registry(monkeypatch):
    monkeypatch.setitem(ACTIVATIONS, "cube", _Cube)
    model = EquiformerV2(tiny_config(attn_activation="cube", ffn_activation="cube")).double()
    assert isinstance(model.blocks[0].ga.act, _Cube)
    assert isinstance(model.blocks[0].ffn.act.activation, _Cube)
    assert torch.isfinite(model.eval()(tiny_graph(model))["energy"]).all()
