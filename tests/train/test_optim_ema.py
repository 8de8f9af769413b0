import pytest
import torch

from eqv2.model import EquiformerV2, EquiformerV2Config
from eqv2.train.ema import EMA
from eqv2.train.optim import cosine_warmup_factor, make_optimizer, no_weight_decay_names
from tests.tiny import TINY_MODEL

#: the shared tiny model with the grid MLP, linear references and the separable norm
TINY = dict(
    **TINY_MODEL,
    use_grid_mlp=True,
    load_energy_lin_ref=True,
    norm_type="layer_norm_sh",
)


def test_weight_decay_groups():
    model = EquiformerV2(EquiformerV2Config(**TINY))
    exempt = no_weight_decay_names(model)
    assert "sphere_embedding.weight" in exempt
    assert "blocks.0.norm_1.norm_l0.weight" in exempt
    assert "blocks.0.norm_1.affine_weight" in exempt
    assert "blocks.0.ga.so2_conv_1.fc_m0.bias" in exempt
    assert "blocks.0.ga.so2_conv_1.fc_m0.weight" not in exempt
    assert "blocks.0.ffn.so3_linear_1.weight" not in exempt
    assert "blocks.0.ga.alpha_dot" not in exempt
    optimizer, _ = make_optimizer(model, 1e-3, 1e-3, total_steps=10, warmup_steps=2)
    decayed, free = optimizer.param_groups
    n_trainable = sum(1 for p in model.parameters() if p.requires_grad)
    assert len(decayed["params"]) + len(free["params"]) == n_trainable  # energy_lin_ref frozen
    assert decayed["weight_decay"] == 1e-3 and free["weight_decay"] == 0.0


def test_schedule_shape():
    f = lambda s: cosine_warmup_factor(s, 100, 10, 0.2, 0.01)  # noqa: E731
    assert f(0) == pytest.approx(0.2)
    assert f(5) == pytest.approx(0.6)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.01 + 0.99 * 0.5)
    assert f(100) == pytest.approx(0.01) and f(500) == pytest.approx(0.01)
    values = [f(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_ema_tracks_and_swaps():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], start + 0.5)
    with ema.applied(model):
        torch.testing.assert_close(model.weight, start + 0.5)
    torch.testing.assert_close(model.weight, start + 1.0)
    other = EMA(torch.nn.Linear(3, 2))
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.shadow["weight"], start + 0.5)
    with pytest.raises(ValueError, match="EMA decay"):
        EMA(model, decay=1.0)
