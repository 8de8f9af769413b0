"""configs/materials/*.yaml: the OMat24 and DeNS paper-size models, with fairchem's parameter
counts (fairchem-core 1.10's HydraModel from the same arguments, recorded with the script in
tests/model/data/fairchem_family_param_counts.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eqv2.model import EquiformerV2
from eqv2.model.config import EquiformerV2Config
from eqv2.train.run_config import load_run_config

REPO = Path(__file__).resolve().parents[2]
#: the family configs (the fine-tuning recipes beside them, ``finetune_*.yaml``, are not models)
CONFIGS = sorted(
    p for p in (REPO / "configs" / "materials").glob("*.yaml") if not p.name.startswith("finetune_")
)
FAIRCHEM = json.loads(
    (Path(__file__).parent / "data" / "fairchem_family_param_counts.json").read_text()
)


def _count(config: EquiformerV2Config) -> int:
    """Parameters of the model with ``config.num_layers`` blocks, from models with 1 and 2
    blocks (the blocks are identical, so the count is affine in the number of blocks): the
    153M models are then counted in a second instead of built."""
    sizes = []
    for layers in (1, 2):
        small = EquiformerV2Config.from_dict({**config.to_dict(), "num_layers": layers})
        sizes.append(EquiformerV2(small).num_params)
    return sizes[0] + (config.num_layers - 1) * (sizes[1] - sizes[0])


def test_every_config_has_a_fairchem_count():
    names = {p.name for p in CONFIGS}
    assert names == {
        f"{f}_{s}.yaml" for f in ("omat24", "dens_mptrj") for s in ("31m", "86m", "153m")
    }
    assert names == set(FAIRCHEM["counts"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_parameter_count_equals_fairchems(path):
    config = load_run_config(path).model
    assert _count(config) == FAIRCHEM["counts"][path.name]
    assert config.heads is not None and "stress" in config.heads
    assert (config.max_radius, config.max_neighbors, config.max_num_elements) == (12.0, 20, 96)
    assert config.enforce_max_neighbors_strictly is False
    assert config.backbone == ("dens" if path.name.startswith("dens") else "equiformer_v2")


def test_affine_count_equals_a_built_model():
    config = load_run_config(REPO / "configs" / "materials" / "dens_mptrj_31m.yaml").model
    assert EquiformerV2(config).num_params == _count(config) == 34_339_083


def test_stress_finetune_recipe_loads():
    """The OMat-style stress fine-tune recipe parses, trains stress and starts from the fixture."""
    run = load_run_config(REPO / "configs" / "materials" / "finetune_omat_bulk_stress.yaml")
    assert run.train.stress_isotropic_coefficient > 0
    assert run.train.stress_anisotropic_coefficient > 0
    assert run.finetune is not None and run.finetune.init_from.endswith("omat_stress_small.pt")
    assert (REPO / run.finetune.init_from).resolve().is_file()
