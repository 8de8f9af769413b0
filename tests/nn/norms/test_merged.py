"""EquiformerV3's merged norms against a per-degree loop written from their definition."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqv2.model import EquiformerV2
from eqv2.nn.norms import NORMS, MergedLayerNorm, MergedRMSNorm, make_norm
from tests.nn.symmetry import EXACT, features, random_rotation, rotate
from tests.tiny import tiny_config, tiny_graph


def _loop_reference(x, weight, bias, eps, centering):
    """Per degree: mean over channels of the squares, mean over the 2l+1 orders, then the
    mean over degrees; one scale per node; per-degree affine weight; bias on l = 0."""
    lmax = round(x.shape[1] ** 0.5) - 1
    if centering:
        x = torch.cat((x[:, :1] - x[:, :1].mean(dim=2, keepdim=True), x[:, 1:]), dim=1)
    per_degree = [x[:, l * l : (l + 1) ** 2].pow(2).mean(dim=(1, 2)) for l in range(lmax + 1)]
    scale = (torch.stack(per_degree, dim=1).mean(dim=1) + eps).rsqrt()
    out = []
    for l in range(lmax + 1):
        out.append(x[:, l * l : (l + 1) ** 2] * scale.view(-1, 1, 1) * weight[l])
    out = torch.cat(out, dim=1)
    if centering:
        out[:, 0] = out[:, 0] + bias
    return out


def _randomised(norm: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    norm = norm.double()
    with torch.no_grad():
        for p in norm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return norm


@pytest.mark.parametrize("name, centering", [("merge_layer_norm", True), ("merge_rms_norm", False)])
def test_merged_norms_match_their_definition(name, centering):
    norm = _randomised(make_norm(name, 3, 5))
    x = 2.0 + 3.0 * features(6, 3, 5, seed=3)  # an l = 0 offset, so centring matters
    bias = norm.affine_bias if centering else None
    expected = _loop_reference(x, norm.affine_weight, bias, norm.eps, centering)
    torch.testing.assert_close(norm(x), expected, rtol=0, atol=1e-12)


def test_merge_layer_norm_is_rms_norm_sh():
    """The same function and parameters: a checkpoint with one name loads under the other."""
    assert NORMS["merge_layer_norm"] is NORMS["rms_norm_sh"] is MergedLayerNorm
    rms = _randomised(make_norm("rms_norm_sh", 2, 4))
    merged = make_norm("merge_layer_norm", 2, 4).double()
    merged.load_state_dict(rms.state_dict())
    x = features(5, 2, 4, seed=1)
    torch.testing.assert_close(merged(x), rms(x), rtol=0, atol=0)


def test_merge_rms_norm_differs_when_l0_has_a_mean():
    rms, plain = make_norm("merge_layer_norm", 2, 4).double(), make_norm("merge_rms_norm", 2, 4)
    x = 1.0 + features(3, 2, 4, seed=2)
    assert not torch.allclose(rms(x), plain.double()(x))
    assert {n for n, _ in plain.named_parameters()} == {"affine_weight"}  # no bias


@pytest.mark.parametrize("name", ["merge_layer_norm", "merge_rms_norm"])
def test_equivariant(name):
    norm, x, R = _randomised(make_norm(name, 3, 4)), features(5, 3, 4, seed=1), random_rotation(5)
    torch.testing.assert_close(norm(rotate(x, R)), rotate(norm(x), R), rtol=0, atol=EXACT)


class _DegreeScale(nn.Module):
    """A test-only norm: one learned scale per degree, nothing else."""

    def __init__(self, lmax: int, num_channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(lmax + 1))
        self.lmax = lmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        degree = torch.cat([torch.full((2 * l + 1,), l) for l in range(self.lmax + 1)])
        return x * self.scale[degree].view(1, -1, 1)


def test_a_new_norm_is_one_line_in_the_registry(monkeypatch):
    monkeypatch.setitem(NORMS, "degree_scale", _DegreeScale)
    model = EquiformerV2(tiny_config(norm_type="degree_scale")).double().eval()
    assert isinstance(model.blocks[0].norm_1, _DegreeScale) and isinstance(model.norm, _DegreeScale)
    assert torch.isfinite(model(tiny_graph(model))["energy"]).all()


def test_merged_rms_norm_class_has_no_centering():
    assert MergedRMSNorm.centering is False and MergedLayerNorm.centering is True
