"""The YAML presets in configs/: they load, build, and match fairchem's parameter counts."""

import json
from pathlib import Path

import pytest

from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.train.run_config import apply_overrides, load_run_config

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted((REPO / "configs").glob("*.yaml"))
FAIRCHEM = json.loads((Path(__file__).parent / "data" / "fairchem_param_counts.json").read_text())
EXPECTED = {
    "quickstart.yaml",
    "s2ef_2m_base.yaml",
    "oc20_31m.yaml",
    "oc20_153m.yaml",
    "oc22.yaml",
}


#: presets without a fairchem count, and why (the counting script builds fairchem's
#: energy + direct-force hydra model only)
UNCOUNTED = {
    "qm9.yaml": "named-target property heads: no fairchem counterpart",
    "qm9_cpu.yaml": "named-target property heads: no fairchem counterpart",
    "is2re_direct.yaml": "property and displacement heads: no fairchem counterpart",
    "dens_noisy_nodes_emt.yaml": "Noisy Nodes position_denoising_head: no fairchem counterpart",
    "dens_emt.yaml": "DeNS backbone and heads: not built by the counting script yet",
}


def test_expected_presets_exist():
    assert EXPECTED <= {p.name for p in PRESETS}
    assert {p.name for p in PRESETS} - set(UNCOUNTED) <= set(FAIRCHEM["counts"]), (
        "a new preset needs its fairchem count in tests/train/data/fairchem_param_counts.json"
    )
    assert set(UNCOUNTED) <= {p.name for p in PRESETS}, "stale UNCOUNTED entries"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_loads_and_matches_fairchem_param_count(path):
    run = load_run_config(path)
    if run.train.max_epochs is None:  # an epoch schedule sizes its steps from the data
        assert run.train.warmup_steps < run.train.max_steps
        assert run.train.eval_every <= run.train.max_steps
    assert run.train.amp == "off" and run.train.device == "auto"  # YAML `off` is False
    model = EquiformerV2(run.model)
    if path.name in UNCOUNTED:
        assert path.name not in FAIRCHEM["counts"]
    else:
        assert model.num_params == FAIRCHEM["counts"][path.name]


def test_paper_presets_follow_fairchem():
    def load(name):
        return load_run_config(REPO / "configs" / name)

    shapes = {
        "s2ef_2m_base.yaml": (12, [6], [2]),
        "oc20_31m.yaml": (8, [4], [2]),
        "oc20_153m.yaml": (20, [6], [3]),
        "oc22.yaml": (18, [6], [2]),
    }
    for name, (layers, lmax, mmax) in shapes.items():
        run = load(name)
        m = run.model
        assert (m.num_layers, m.lmax_list, m.mmax_list) == (layers, lmax, mmax), name
        assert (m.max_radius, m.max_neighbors, m.grid_resolution) == (12.0, 20, 18), name
        assert run.train.max_structures_per_batch is not None, name
        assert run.data.train is None and run.data.val is None, name
    oc22 = load("oc22.yaml")
    assert oc22.data.linear_references
    assert oc22.model.use_energy_lin_ref and oc22.model.load_energy_lin_ref
    assert (oc22.train.lr, oc22.train.grad_clip) == (2e-4, 50)
    assert (oc22.train.energy_coefficient, oc22.train.force_coefficient) == (4, 100)
    base = load("s2ef_2m_base.yaml")
    # the authors' S2EF-2M scripts: bs@64_lr@2e-4_wd@1e-3_epochs@12_warmup-epochs@0.1
    assert (base.train.lr, base.train.weight_decay, base.train.ema_decay) == (2e-4, 1e-3, 0.999)
    assert (base.train.max_epochs, base.train.warmup_epochs) == (12, 0.1)
    assert base.train.max_structures_per_batch == 64
    assert (base.train.warmup_factor, base.train.lr_min_factor) == (0.2, 0.01)


def test_quickstart_is_small_and_unset():
    run = load_run_config(REPO / "configs" / "quickstart.yaml")
    assert run.data.train is None and run.data.val is None and run.data.test is None
    assert run.model.num_layers <= 2 and run.model.max_radius <= 6.0
    assert run.train.max_steps <= 1000


def test_overrides_on_a_preset():
    path = REPO / "configs" / "quickstart.yaml"
    run = load_run_config(path, ["train.lr=1e-3", "model.num_layers=1", "data.train=x.xyz"])
    assert run.train.lr == pytest.approx(1e-3)
    assert run.model.num_layers == 1 and run.data.train == "x.xyz"
    with pytest.raises(ValueError, match=r"\[train\]: unknown key 'lrr'. Did you mean 'lr'"):
        load_run_config(path, ["train.lrr=1"])
    with pytest.raises(ValueError, match=r"\[model\]: .*'num_layer'.*'num_layers'"):
        load_run_config(path, ["model.num_layer=3"])
    with pytest.raises(ValueError, match="unknown key 'trian'. Did you mean 'train'"):
        apply_overrides({}, ["trian.lr=1"])
    with pytest.raises(ValueError, match="section.key=value"):
        load_run_config(path, ["lr=1"])
