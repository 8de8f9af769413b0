"""Outputs and loss terms declared in the config: parsing, the legacy translation, data.target."""

from __future__ import annotations

import pytest

from eqv2.train.run_config import parse_run_config
from eqv2.train.targets_spec import LossSpec, LossTerm, TargetSpec, TaskSpec
from eqv2.train.task_config import parse_task
from eqv2.train.trainer_config import TrainerConfig


def test_legacy_train_keys_translate_to_the_same_s2ef_terms():
    train = TrainerConfig(energy_coefficient=2.0, force_coefficient=50.0, energy_loss="mse",
                          free_atoms_only=False, stress_isotropic_coefficient=5.0)  # fmt: skip
    task = parse_task(None, None, train)
    assert task.s2ef == LossSpec(2.0, 50.0, "mse", False, 5.0, 0.0)
    assert task.targets == () and task.part_names() == train.loss_spec().part_names()
    assert task.best_metric() == "force_mae"


def test_declared_sections_equal_the_legacy_form():
    outputs = {"energy": {}, "forces": {}}
    loss = [{"energy": {"fn": "mae", "coefficient": 2}}, {"forces": {"coefficient": 50}}]
    task = parse_task(outputs, loss, TrainerConfig())
    legacy = parse_task(None, None, TrainerConfig(energy_coefficient=2, force_coefficient=50))
    assert task == legacy


def test_named_targets_with_forces_and_without():
    outputs = {"energy": {}, "forces": {}, "gap": {"unit": "meV", "scale": 1000.0}}
    task = parse_task(outputs, {"gap": {"fn": "mse", "coefficient": 3}}, TrainerConfig())
    assert task.s2ef is not None
    assert task.targets == (TargetSpec("gap", unit="meV", scale=1000.0),)
    assert task.losses == (LossTerm("gap", "mse", 3.0),)
    assert task.part_names() == ("energy_loss", "force_loss", "gap_loss")
    alone = parse_task({"u0": {"key": "U0", "extensive": True}}, None, TrainerConfig())
    assert alone.s2ef is None and alone.best_metric() == "u0_mae"
    assert alone.targets[0].read_key == "U0" and alone.targets[0].head_spec() == {
        "module": "scalar_head", "reduce": "sum"}  # fmt: skip


def test_data_target_selects_declared_targets_and_drops_energy_and_forces():
    outputs = {"energy": {}, "forces": {}, "gap": {"unit": "eV"}, "homo": {"unit": "eV"}}
    task = parse_task(outputs, None, TrainerConfig(), target="gap")
    assert task.s2ef is None and task.targets == (TargetSpec("gap", unit="eV"),)
    # an undeclared target: read under its own name, intensive
    task = parse_task(None, None, TrainerConfig(), target="dipole, gap")
    assert task.target_names == ("dipole", "gap")
    assert all(not t.extensive for t in task.targets)


@pytest.mark.parametrize(
    ("outputs", "loss", "train", "match"),
    [
        ({"energy": {}}, None, {}, "without both energy and forces"),
        (None, {"energy": {"fn": "l2mae"}, "forces": {}}, {}, "choose one of"),
        ({"gap": {"readout": "mean"}}, None, {}, "unknown option"),
        ({"energy": {}, "forces": {}}, None, {"force_coefficient": 10}, "declare it once"),
        ({"gap": {}}, {"gap": {"fn": "huber"}}, {}, "choose one of"),
        ({"stress": {}}, None, {}, "fixed output"),
    ],
)
def test_bad_sections_name_the_entry(outputs, loss, train, match):
    with pytest.raises(ValueError, match=match):
        parse_task(outputs, loss, TrainerConfig(**train))


def test_run_config_adds_one_property_head_per_target():
    raw = {"model": {"num_layers": 1}, "outputs": {"gap": {"unit": "eV"}, "mu": {}},
           "data": {"target": "gap"}}  # fmt: skip
    run = parse_run_config(raw, "qm9.yaml")
    assert run.model.heads == {"gap": {"module": "scalar_head", "reduce": "mean", "unit": "eV"}}
    assert run.task.target_names == ("gap",)
    # the written config parses back to the same model and task
    again = parse_run_config(run.to_dict(), "config.yaml")
    assert again.model.heads == run.model.heads and again.task == run.task
    plain = parse_run_config({"model": {"num_layers": 1}}, "s2ef.yaml")
    assert plain.model.heads is None and plain.task == TaskSpec(LossSpec())


def test_mixed_run_keeps_the_energy_head():
    raw = {"outputs": {"energy": {}, "forces": {}, "gap": {}}}
    run = parse_run_config(raw, "mixed.yaml")
    assert run.model.heads == {"energy": {"module": "equiformer_v2_energy_head"},
                               "forces": {"module": "equiformer_v2_force_head"},
                               "gap": {"module": "scalar_head", "reduce": "mean"}}  # fmt: skip
