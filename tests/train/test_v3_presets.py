"""configs/v3/: the EquiformerV3-options preset builds; the conservative recipe parses."""

from __future__ import annotations

from pathlib import Path

import torch

from eqv2.model import EquiformerV2, EquiformerV2Config
from eqv2.train.finetune import merge_model_config
from eqv2.train.run_config import load_run_config
from tests.tiny import tiny_graph

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "v3"


def test_small_preset_builds_with_every_v3_option():
    run = load_run_config(CONFIGS / "small.yaml")
    m = run.model
    assert (m.norm_type, m.attention_activation, m.feed_forward_activation) == (
        "merge_layer_norm", "swiglu_s2", "swiglu_grid_mlp",
    )  # fmt: skip
    assert m.ffn_hidden_channels == 4 * m.sphere_channels
    assert (m.edge_grid_resolution, m.node_grid_resolution) == ((12, 8), (12, 12))
    assert run.train.warmup_steps < run.train.max_steps
    model = EquiformerV2(m).eval()
    out = model.double()(tiny_graph(model.double()))
    assert torch.isfinite(out["energy"]).all()


def test_conservative_recipe_turns_a_direct_model_conservative():
    run = load_run_config(CONFIGS / "conservative_finetune.yaml")
    direct = load_run_config(CONFIGS / "small.yaml").model
    direct = EquiformerV2Config(**{**direct.to_dict(), "direct_forces": True})
    merged = merge_model_config(run.model, run.model_keys, direct, "recipe", "direct.pt")
    assert merged.direct_forces is False
    assert {k: v for k, v in merged.to_dict().items() if k != "direct_forces"} == {
        k: v for k, v in direct.to_dict().items() if k != "direct_forces"
    }
    assert run.train.lr < 2e-4 and run.train.max_epochs is not None
