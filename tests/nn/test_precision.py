"""Mixed precision: norms and the attention softmax stay float32 under bfloat16 autocast."""

from __future__ import annotations

import pytest
import torch
from ase.build import add_adsorbate, fcc111

import eqv2.nn.attention
from eqv2.model import Potential
from eqv2.nn.norm import (
    EquivariantLayerNorm,
    EquivariantLayerNormSH,
    EquivariantRMSNormSH,
)
from eqv2.nn.precision import autocast_dtype, full_precision
from eqv2.nn.so3_linear import SO3Linear
from tests.tiny import tiny_model

NORMS = (EquivariantLayerNorm, EquivariantLayerNormSH, EquivariantRMSNormSH, torch.nn.LayerNorm)


def _model(**overrides) -> Potential:
    model = tiny_model(max_radius=5.0, max_neighbors=12, use_grid_mlp=True, **overrides)
    return Potential(model).eval()


def _graph(potential: Potential) -> dict[str, torch.Tensor]:
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    slab.rattle(0.1, seed=1)
    return potential.build_graph([slab, slab[:-1]])


def test_full_precision_casts_only_under_autocast():
    seen = []

    @full_precision
    def f(x, scale=1.0):
        seen.append((x.dtype, autocast_dtype(x)))
        return x * scale

    x = torch.ones(2)
    assert f(x).dtype == torch.float32 and seen[-1] == (torch.float32, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert autocast_dtype(x) == torch.bfloat16
        assert f(x.bfloat16(), scale=2.0).dtype == torch.float32
        assert seen[-1] == (torch.float32, None)  # autocast was off inside
    assert f(x.double()).dtype == torch.float64  # untouched outside autocast


@pytest.mark.parametrize("norm_type", ["layer_norm", "layer_norm_sh", "rms_norm_sh"])
def test_norms_and_softmax_are_float32_under_autocast(norm_type, monkeypatch):
    potential = _model(norm_type=norm_type)
    dtypes: dict[str, set] = {"norm": set(), "linear": set(), "softmax": set()}

    def record(kind):
        return lambda module, args, out: dtypes[kind].add(out.dtype)

    for module in potential.model.modules():
        if isinstance(module, NORMS):
            module.register_forward_hook(record("norm"))
        elif isinstance(module, SO3Linear):
            module.register_forward_hook(record("linear"))
    softmax = eqv2.nn.attention.segment_softmax

    def spy(*args, **kwargs):
        out = softmax(*args, **kwargs)
        dtypes["softmax"].add(out.dtype)
        return out

    monkeypatch.setattr(eqv2.nn.attention, "segment_softmax", spy)
    graph = _graph(potential)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = potential.model(graph)
    assert dtypes["linear"] == {torch.bfloat16}  # autocast is really on
    assert dtypes["norm"] == {torch.float32}
    assert dtypes["softmax"] == {torch.float32}
    assert out["energy"].dtype == out["forces"].dtype == torch.float32


@pytest.mark.parametrize("direct_forces", [True, False])
def test_bfloat16_forward_stays_close_to_float32(direct_forces):
    potential = _model(direct_forces=direct_forces)
    graph = _graph(potential)
    reference = potential(graph)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = potential(graph)
    for key, bound in (("energy", 0.05), ("forces", 0.1)):  # bfloat16 keeps ~3 digits
        error = (low[key].double() - reference[key].double()).norm()
        assert error < bound * reference[key].double().norm(), key
