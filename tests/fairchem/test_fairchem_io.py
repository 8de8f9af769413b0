"""Reading fairchem/OCP EquiformerV2 checkpoints and writing fairchem-readable ones.

Uses the checkpoint-file fixtures in ../shared/reference/checkpoints (see their README for what
fairchem-core 1.10 does with them); fairchem itself is not needed.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from eqv2.fairchem import (
    FairchemCheckpoint,
    detect_layout,
    from_fairchem_state_dict,
    hydra_to_monolithic_key,
    is_fairchem_buffer,
    is_fairchem_checkpoint,
    monolithic_to_hydra_key,
    read_fairchem_checkpoint,
    strip_module_prefix,
    to_fairchem_checkpoint,
    to_fairchem_state_dict,
)
from eqv2.model.checkpoint import CheckpointError, safe_load
from eqv2.model.config import EquiformerV2Config
from eqv2.model.state_dict import StateDictMismatchError, validate_state_dict

FILES = ("legacy_oc20_monolithic", "fairchem1_hydra")
KEY_NAMES = Path(__file__).parent / "data" / "fairchem_key_names.json"
NUM_PARAMETERS = 936_834


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(checkpoints_dir: Path) -> dict[str, dict[str, Any]]:
    return {name: safe_load(checkpoints_dir / f"{name}.pt") for name in FILES}


@pytest.fixture(scope="module")
def expected(checkpoints_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for name in FILES:
        with open(checkpoints_dir / f"{name}.expected.json") as handle:
            out[name] = json.load(handle)
    return out


@pytest.fixture(scope="module")
def backbone_config(small_fixture_dir: Path) -> dict[str, Any]:
    with open(small_fixture_dir / "config.json") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def reference_params(reference_state_dict) -> dict[str, torch.Tensor]:
    params, _, layout = from_fairchem_state_dict(reference_state_dict)
    assert layout == "hydra"
    return params


def _to_eqv2_key(key: str) -> str:
    key = strip_module_prefix(key)
    return hydra_to_monolithic_key(key) if key.startswith(("backbone.", "output_heads.")) else key


# -- reading the fixture files --------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_fixture_files_parse(
    raw, backbone_config, reference_params, name: str, checkpoints_dir: Path
) -> None:
    assert is_fairchem_checkpoint(raw[name])
    ckpt = read_fairchem_checkpoint(checkpoints_dir / f"{name}.pt")
    assert isinstance(ckpt, FairchemCheckpoint)
    assert ckpt.path == checkpoints_dir / f"{name}.pt"
    assert ckpt.layout == ("monolithic" if name.startswith("legacy") else "hydra")
    assert ckpt.used_ema is False
    want = EquiformerV2Config.from_dict(backbone_config["backbone_config"])
    assert ckpt.config.to_dict() == want.to_dict()
    assert set(ckpt.heads) == {"energy", "forces"}

    # parameters only, eqv2 names, float32 as stored, same keys/shapes as the small fixture
    assert list(ckpt.state_dict) == list(reference_params)
    assert sum(v.numel() for v in ckpt.state_dict.values()) == NUM_PARAMETERS
    assert all(v.dtype == torch.float32 for v in ckpt.state_dict.values())
    assert not any(is_fairchem_buffer(k) for k in ckpt.state_dict)
    assert len(ckpt.state_dict) + len(ckpt.buffers) == len(raw[name]["state_dict"])
    for key, value in ckpt.state_dict.items():
        assert value.shape == reference_params[key].shape, key
    same = [torch.equal(v, reference_params[k]) for k, v in ckpt.state_dict.items()]
    if name.startswith("legacy"):
        assert all(same)  # the legacy file holds exactly eqv2_small's parameters
    else:
        assert not any(same)  # the hydra file's are further perturbed


def test_parameters_equal_fixture_under_key_mapping(raw, reference_state_dict) -> None:
    legacy = raw["legacy_oc20_monolithic"]["state_dict"]
    for key, value in reference_state_dict.items():  # parameters and buffers
        mono = hydra_to_monolithic_key(key)
        assert torch.equal(legacy["module.module." + mono], value), key


def test_legacy_normalizers(checkpoints_dir: Path) -> None:
    ckpt = read_fairchem_checkpoint(checkpoints_dir / "legacy_oc20_monolithic.pt")
    norm = ckpt.normalizers
    assert norm is not None and set(norm) == {"energy", "forces"}
    assert norm["energy"]["mean"] == pytest.approx(-0.7554450631141663, rel=1e-7)
    assert norm["energy"]["std"] == pytest.approx(2.887317180633545, rel=1e-7)
    assert norm["forces"]["mean"] == 0.0
    assert norm["forces"]["std"] == pytest.approx(2.887317180633545, rel=1e-7)
    assert all(isinstance(v, float) for stats in norm.values() for v in stats.values())
    assert ckpt.element_references is None


def test_hydra_normalizers_and_element_references(checkpoints_dir: Path) -> None:
    ckpt = read_fairchem_checkpoint(checkpoints_dir / "fairchem1_hydra.pt")
    norm = ckpt.normalizers
    assert norm is not None
    assert norm["energy"]["mean"] == pytest.approx(0.0312, rel=1e-6)
    assert norm["energy"]["std"] == pytest.approx(1.4137, rel=1e-6)
    assert norm["forces"] == {"mean": 0.0, "std": pytest.approx(0.8126, rel=1e-6)}
    refs = ckpt.element_references
    assert refs is not None and refs.shape == (119,) and refs.dtype == torch.float32
    nonzero = set(torch.nonzero(refs).flatten().tolist())
    assert nonzero == {1, 6, 8, 11, 17, 26, 29, 46, 78}  # H C O Na Cl Fe Cu Pd Pt


# -- EMA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_ema_order_follows_state_dict_parameter_order(raw, expected, name: str) -> None:
    """The claim the EMA mapping rests on: fairchem's parameters() order (the shadow order,
    recorded in the fixture's ema_param_keys) is the state dict's key order minus buffers."""
    sd_order = [k for k in raw[name]["state_dict"] if not is_fairchem_buffer(k)]
    assert sd_order == expected[name]["ema_param_keys"]


@pytest.mark.parametrize("name", FILES)
def test_use_ema_gives_the_shadow_weights(raw, expected, name: str) -> None:
    ckpt = read_fairchem_checkpoint(raw[name], use_ema=True)
    plain = read_fairchem_checkpoint(raw[name])
    assert ckpt.used_ema is True
    shadow = raw[name]["ema"]["shadow_params"]
    keys = [_to_eqv2_key(k) for k in expected[name]["ema_param_keys"]]
    assert list(ckpt.state_dict) == keys == list(plain.state_dict)
    for i, key in enumerate(keys):
        assert torch.equal(ckpt.state_dict[key], shadow[i]), key
        assert not torch.equal(ckpt.state_dict[key], plain.state_dict[key]), key


def test_ema_mismatch_is_reported(raw) -> None:
    ckpt = dict(raw["fairchem1_hydra"])
    ckpt["ema"] = dict(ckpt["ema"], shadow_params=ckpt["ema"]["shadow_params"][:-1])
    with pytest.raises(CheckpointError, match="(?s)129 tensors.*130 trainable"):
        read_fairchem_checkpoint(ckpt, use_ema=True)
    shadow = list(raw["fairchem1_hydra"]["ema"]["shadow_params"])
    shadow[0], shadow[1] = shadow[1], shadow[0]  # [90, 32] vs [90, 32]: same shape
    shadow[0], shadow[3] = shadow[3], shadow[0]  # bring in a differently shaped tensor
    ckpt["ema"] = dict(ckpt["ema"], shadow_params=shadow)
    with pytest.raises(CheckpointError, match=r"shadow_params'\]\[0\] has shape \[32, 664\]"):
        read_fairchem_checkpoint(ckpt, use_ema=True)


def test_best_checkpoint_style_file(raw) -> None:
    best = {
        k: v
        for k, v in raw["legacy_oc20_monolithic"].items()
        if k not in ("ema", "optimizer", "scheduler", "amp", "epoch", "step")
    }
    ckpt = read_fairchem_checkpoint(best)
    assert len(ckpt.state_dict) == 130 and ckpt.normalizers is not None and ckpt.path is None
    with pytest.raises(CheckpointError, match="no EMA weights.*best_checkpoint"):
        read_fairchem_checkpoint(best, use_ema=True)


# -- bare state dicts and configs -----------------------------------------------------------------


def test_bare_state_dicts(reference_state_dict, reference_params, backbone_config) -> None:
    cfg = backbone_config["backbone_config"]
    variants = {
        "hydra": reference_state_dict,
        "hydra+module": {"module." + k: v for k, v in reference_state_dict.items()},
        "monolithic+module.module": {
            "module.module." + hydra_to_monolithic_key(k): v
            for k, v in reference_state_dict.items()
        },
        "hydra params only": {
            k: v for k, v in reference_state_dict.items() if not is_fairchem_buffer(k)
        },
    }
    for label, sd in variants.items():
        ckpt = read_fairchem_checkpoint(sd, config=cfg)
        assert ckpt.config.sphere_channels == 32 and ckpt.config.lmax_list == [4], label
        assert ckpt.normalizers is None and ckpt.element_references is None
        assert list(ckpt.state_dict) == list(reference_params), label
        assert all(torch.equal(v, reference_params[k]) for k, v in ckpt.state_dict.items())
    with pytest.raises(CheckpointError, match="pass config="):
        read_fairchem_checkpoint(reference_state_dict)
    # other spellings of the config: fairchem's model section, EquiformerV2Config
    hydra_section = read_fairchem_checkpoint(reference_state_dict, config=backbone_config["model"])
    assert hydra_section.config.to_dict() == EquiformerV2Config.from_dict(cfg).to_dict()
    obj = EquiformerV2Config.from_dict(cfg)
    assert read_fairchem_checkpoint(reference_state_dict, config=obj).config is obj


def test_model_config_layouts(raw, backbone_config) -> None:
    """Old string model + model_attributes, hydra dict, and {name: equiformer_v2, ...}."""
    kwargs = backbone_config["backbone_config"]
    sd = raw["legacy_oc20_monolithic"]["state_dict"]
    want = EquiformerV2Config.from_dict(kwargs).to_dict()
    for model in ({"name": "equiformer_v2", **kwargs}, {"name": "EquiformerV2", **kwargs}):
        ckpt = read_fairchem_checkpoint({"state_dict": sd, "config": {"model": model}})
        assert ckpt.config.to_dict() == want
        assert ckpt.normalizers is None


def _with_config(raw_ckpt: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = dict(raw_ckpt)
    out["config"] = copy.deepcopy(raw_ckpt["config"])
    for path, value in changes.items():
        node = out["config"]
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def test_config_errors_name_the_problem(raw) -> None:
    legacy, hydra = raw["legacy_oc20_monolithic"], raw["fairchem1_hydra"]
    with pytest.raises(CheckpointError, match="'sphere_chanels'.*sphere_channels"):
        read_fairchem_checkpoint(_with_config(legacy, model_attributes__sphere_chanels=8))
    with pytest.raises(CheckpointError, match="'lmax_lst'"):
        read_fairchem_checkpoint(_with_config(hydra, model__backbone__lmax_lst=[4]))
    with pytest.raises(CheckpointError, match="'escn'.*not an EquiformerV2"):
        read_fairchem_checkpoint(_with_config(legacy, model="escn"))
    with pytest.raises(CheckpointError, match="escn_backbone"):
        read_fairchem_checkpoint(_with_config(hydra, model__backbone__model="escn_backbone"))
    with pytest.raises(CheckpointError, match="'dipole'.*dipole_head.*rank2_symmetric_head"):
        read_fairchem_checkpoint(
            _with_config(hydra, model__heads__dipole={"module": "dipole_head"})
        )
    with pytest.raises(CheckpointError, match="not a fairchem checkpoint"):
        read_fairchem_checkpoint({"weights": [1, 2, 3]})
    with pytest.raises(CheckpointError, match="load_checkpoint"):
        read_fairchem_checkpoint({"format": "eqv2-checkpoint", "state_dict": {}, "config": {}})


def test_unsupported_head_keys_and_mixed_layouts(reference_state_dict, backbone_config) -> None:
    cfg = backbone_config["backbone_config"]
    extra_head = dict(reference_state_dict)
    extra_head["output_heads.stress.stress_block.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="output head 'stress'"):
        read_fairchem_checkpoint(extra_head, config=cfg)
    mixed = dict(reference_state_dict)
    mixed["sphere_embedding.weight"] = torch.zeros(90, 32)
    with pytest.raises(CheckpointError, match="mixes"):
        read_fairchem_checkpoint(mixed, config=cfg)


# -- key mapping ----------------------------------------------------------------------------------


def test_key_functions() -> None:
    assert strip_module_prefix("module.module.blocks.0.ga.alpha_dot") == "blocks.0.ga.alpha_dot"
    assert hydra_to_monolithic_key("backbone.norm.affine_weight") == "norm.affine_weight"
    assert (
        hydra_to_monolithic_key("output_heads.energy.energy_block.so3_linear_1.weight")
        == "energy_block.so3_linear_1.weight"
    )
    assert (
        hydra_to_monolithic_key("output_heads.f.force_block.so2_conv_1.rad_func.net.6.bias")
        == "force_block.so2_conv_1.rad_func.net.6.bias"
    )
    assert monolithic_to_hydra_key("energy_block.x") == "output_heads.energy.energy_block.x"
    assert (
        monolithic_to_hydra_key("force_block.x", force_head="f") == "output_heads.f.force_block.x"
    )
    assert monolithic_to_hydra_key("energy_lin_ref") == "backbone.energy_lin_ref"
    with pytest.raises(ValueError, match="hydra layout"):
        hydra_to_monolithic_key("sphere_embedding.weight")
    assert detect_layout(["module.backbone.a", "module.output_heads.energy.energy_block.b"]) == (
        "hydra"
    )
    assert detect_layout(["module.module.a", "energy_block.b"]) == "monolithic"
    with pytest.raises(ValueError, match="empty"):
        detect_layout([])


def test_buffer_rule_matches_fairchem_names() -> None:
    """Names recorded from fairchem 1.10 models of 11 configs, both layouts."""
    with open(KEY_NAMES) as handle:
        names = json.load(handle)
    assert len(names["parameters"]) > 100 and len(names["buffers"]) > 100
    assert [k for k in names["parameters"] if is_fairchem_buffer(k)] == []
    assert [k for k in names["buffers"] if not is_fairchem_buffer(k)] == []


def test_hydra_round_trip(reference_state_dict) -> None:
    params, buffers, layout = from_fairchem_state_dict(reference_state_dict)
    back = to_fairchem_state_dict(params, layout="hydra", buffers=buffers)
    assert set(back) == set(reference_state_dict)
    assert all(back[k] is reference_state_dict[k] for k in back)
    only_params = to_fairchem_state_dict(params, layout="hydra", prefix="module.")
    assert set(only_params) == {
        "module." + k for k in reference_state_dict if not is_fairchem_buffer(k)
    }


def test_monolithic_round_trip(raw) -> None:
    sd = raw["legacy_oc20_monolithic"]["state_dict"]
    params, buffers, layout = from_fairchem_state_dict(sd)
    assert layout == "monolithic"
    back = to_fairchem_state_dict(params, "monolithic", "module.module.", buffers=buffers)
    assert set(back) == set(sd) and all(back[k] is sd[k] for k in back)
    # and across layouts: monolithic -> eqv2 -> hydra -> eqv2 is the identity
    hydra = to_fairchem_state_dict(params, "hydra")
    again, _, again_layout = from_fairchem_state_dict(hydra)
    assert again_layout == "hydra" and list(again) == list(params)


# -- validation -----------------------------------------------------------------------------------


def test_validate_state_dict(reference_params) -> None:
    expected = {k: v.shape for k, v in reference_params.items()}
    validate_state_dict(reference_params, expected)  # fine

    bad = dict(reference_params)
    del bad["norm.affine_weight"]
    bad["blocks.0.ga.alpha_dot"] = torch.zeros(3, 16)
    bad["blocks.9.ga.alpha_dot"] = torch.zeros(2, 16)
    bad["module.sphere_embedding.weight"] = torch.zeros(90, 32)
    with pytest.raises(StateDictMismatchError) as info:
        validate_state_dict(bad, expected, source="model.pt")
    err = info.value
    message = str(err)
    assert isinstance(err, ValueError)
    assert "model.pt" in message
    assert "norm.affine_weight [4, 32]" in message
    assert "blocks.9.ga.alpha_dot [2, 16]" in message
    assert "blocks.0.ga.alpha_dot: weights [3, 16], model [2, 16]" in message
    assert "read_fairchem_checkpoint" in message and "config" in message
    assert err.missing == ["norm.affine_weight"]
    assert set(err.unexpected) == {"blocks.9.ga.alpha_dot", "module.sphere_embedding.weight"}
    assert [m[0] for m in err.mismatched] == ["blocks.0.ga.alpha_dot"]


def test_validate_state_dict_caps_long_listings(reference_params) -> None:
    expected = {k: v.shape for k, v in reference_params.items()}
    with pytest.raises(StateDictMismatchError, match=r"(?s)130 missing.*and 125 more"):
        validate_state_dict({}, expected, max_listed=5)


# -- export ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["hydra", "monolithic"])
def test_to_fairchem_checkpoint_round_trip(tmp_path: Path, checkpoints_dir: Path, layout) -> None:
    src = read_fairchem_checkpoint(checkpoints_dir / "fairchem1_hydra.pt")
    path = tmp_path / "export.pt"
    out = to_fairchem_checkpoint(
        path,
        state_dict=src.state_dict,
        config=src.config,
        normalizers=src.normalizers,
        element_references=src.element_references,
        layout=layout,
    )
    on_disk = torch.load(path, weights_only=True)  # loads under the restricted unpickler
    assert set(on_disk) == set(out) and [p.name for p in tmp_path.iterdir()] == ["export.pt"]
    assert all(k.startswith("module.") for k in on_disk["state_dict"])
    model_cfg = on_disk["config"]["model"]
    if layout == "hydra":
        assert model_cfg["name"] == "hydra"
        assert model_cfg["backbone"]["model"] == "equiformer_v2_backbone"
        assert set(model_cfg["heads"]) == {"energy", "forces"}
        assert next(iter(on_disk["state_dict"])).startswith("module.backbone.")
    else:
        assert model_cfg["name"] == "equiformer_v2"
    assert on_disk["config"]["task"] == {"strict_load": False}  # no buffers written
    assert set(on_disk["normalizers"]["energy"]) == {"mean", "rmsd"}

    back = read_fairchem_checkpoint(path)
    assert back.layout == layout
    assert back.config.to_dict() == src.config.to_dict()
    assert list(back.state_dict) == list(src.state_dict)
    assert all(torch.equal(back.state_dict[k], v) for k, v in src.state_dict.items())
    assert back.normalizers == src.normalizers
    assert torch.equal(back.element_references, src.element_references)


def test_to_fairchem_checkpoint_with_buffers_is_complete(checkpoints_dir: Path, raw) -> None:
    src = read_fairchem_checkpoint(raw["fairchem1_hydra"])
    out = to_fairchem_checkpoint(state_dict=src.state_dict, config=src.config, buffers=src.buffers)
    assert set(out["state_dict"]) == set(raw["fairchem1_hydra"]["state_dict"])
    assert out["config"]["task"] == {}
    assert out["normalizers"] == {} and "elementrefs" not in out


def test_to_fairchem_checkpoint_config_details(reference_params, backbone_config) -> None:
    cfg = EquiformerV2Config.from_dict(backbone_config["backbone_config"])
    out = to_fairchem_checkpoint(state_dict=reference_params, config=cfg, layout="monolithic")
    model_cfg = out["config"]["model"]
    assert "direct_forces" not in model_cfg and "activation_checkpoint" not in model_cfg
    assert model_cfg["regress_forces"] is True and model_cfg["num_distance_basis"] == 512
    energy_only = {k: v for k, v in reference_params.items() if not k.startswith("force_block.")}
    out = to_fairchem_checkpoint(state_dict=energy_only, config=cfg)
    assert set(out["config"]["model"]["heads"]) == {"energy"}
    assert set(out["config"]["outputs"]) == {"energy"}
    assert out["config"]["model"]["backbone"]["regress_forces"] is False
    back = read_fairchem_checkpoint(out)
    assert set(back.heads) == {"energy"} and list(back.state_dict) == list(energy_only)


def test_config_argument_overrides_an_unreadable_file_config(raw, backbone_config) -> None:
    broken = _with_config(raw["legacy_oc20_monolithic"], model_attributes__bogus_key=1)
    with pytest.raises(CheckpointError, match="bogus_key"):
        read_fairchem_checkpoint(broken)
    ckpt = read_fairchem_checkpoint(broken, config=backbone_config["backbone_config"])
    assert ckpt.config.num_layers == 2 and len(ckpt.state_dict) == 130
