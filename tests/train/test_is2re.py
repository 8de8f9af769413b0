"""IS2RE direct with the IS2RS auxiliary task: displacement targets, the decaying weight, the
equivariant vector head, and a short run of configs/is2re_direct.yaml end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import fcc111, molecule
from ase.io import write

from eqv2.data import DataError, open_dataset
from eqv2.data.targets import read_displacement_target
from eqv2.model import EquiformerV2, Potential
from eqv2.train.run_config import load_run_config, parse_run_config
from eqv2.train.targets_spec import LossTerm, TargetSpec
from eqv2.train.task_config import parse_task
from eqv2.train.trainer_config import TrainerConfig
from eqv2.train.workflow import run_training
from tests.benchmark_module import load_benchmark
from tests.conftest import REPO
from tests.tiny import TINY_MODEL, tiny_config

#: the documented switch to Equiformer's IS2RE Noisy Nodes (configs/is2re_direct.yaml)
IS2RE_NOISY_NODES = (
    "train.denoising={kind: relaxed_interpolation, prob: 1.0, std: 0.3, structure_prob: 0.5}"
)


def test_displacements_are_minimum_images_across_the_cell(tmp_path):
    slab = fcc111("Cu", (2, 2, 2), vacuum=5.0)
    relaxed = slab.positions.copy()
    relaxed[0] += [0.1, 0.0, 0.2]
    relaxed[1] += slab.cell[0] - [0.05, 0.0, 0.0]  # crossed the cell along a: a small move
    slab.new_array("pos_relaxed", relaxed)
    path = tmp_path / "is2re.extxyz"
    write(path, [slab])
    d = read_displacement_target(open_dataset(path)[0])
    # extxyz stores positions to ~1e-10 Å
    assert d[0] == pytest.approx([0.1, 0.0, 0.2], abs=1e-8)
    assert d[1] == pytest.approx([-0.05, 0.0, 0.0], abs=1e-8)
    assert np.abs(d[2:]).max() < 1e-8
    del slab.arrays["pos_relaxed"]
    write(path, [slab])
    with pytest.raises(DataError, match="is2re.extxyz.*'pos_relaxed' is absent"):
        read_displacement_target(open_dataset(path)[0])


def test_the_auxiliary_weight_decays_linearly_from_15_to_1():
    term = LossTerm("relaxed_displacement", "mae", 15.0, 1.0)
    assert [term.coefficient_at(p) for p in (0.0, 0.5, 1.0, 2.0)] == [15.0, 8.0, 1.0, 1.0]
    assert LossTerm("gap", coefficient=2.0).coefficient_at(0.7) == 2.0
    task = parse_task(
        {"e": {"extensive": True}, "d": {"kind": "displacement"}},
        {"d": {"coefficient": 15, "final_coefficient": 1}}, TrainerConfig(),
    )  # fmt: skip
    assert task.targets[1] == TargetSpec("d", kind="displacement")
    assert task.targets[1].read_key == "pos_relaxed" and task.best_metric() == "e_mae"
    with pytest.raises(ValueError, match="for a displacement target"):
        parse_task({"d": {"kind": "displacement"}}, {"d": {"fn": "mse"}}, TrainerConfig())


def test_the_vector_head_is_equivariant():
    heads = {"e": {"module": "scalar_head", "reduce": "sum"}, "d": {"module": "vector_head"}}
    torch.manual_seed(0)
    pot = Potential(EquiformerV2(tiny_config(heads=heads, max_radius=4.0)).double()).eval()
    atoms = molecule("CH3CH2OH")
    rotated = atoms.copy()
    rotated.rotate(63.0, (0.3, -0.5, 0.8), center=(0, 0, 0))
    rot = np.linalg.lstsq(atoms.positions, rotated.positions, rcond=None)[0]
    a, b = pot.predict([atoms, rotated])
    assert a["d"].shape == (len(atoms), 3) and np.abs(a["d"]).max() > 1e-6
    # the S2-grid activations of the tiny model's 8x8 grid are equivariant to ~1e-4 only
    # (measured: 2.2e-5 abs on outputs of ~0.1); a non-equivariant head errs by ~0.1
    assert b["d"] == pytest.approx(a["d"] @ rot, abs=1e-4)
    assert b["e"] == pytest.approx(a["e"], rel=1e-4)  # measured: 1.1e-6 relative


@pytest.fixture(scope="module")
def is2re_files(tmp_path_factory):
    write_is2re = load_benchmark("is2re_ab").write_is2re
    return write_is2re(tmp_path_factory.mktemp("is2re"), systems=10, seed=0, relax_steps=5)


def _sets(is2re_files) -> list[str]:
    """Overrides for a 3-step tiny run of configs/is2re_direct.yaml on ``is2re_files``."""
    sets = [f"data.{k}={v}" for k, v in is2re_files.items()]
    sets += [f"model.{k}={v}" for k, v in TINY_MODEL.items() if k != "lmax_list"]
    sets += ["model.lmax_list=[2]", "model.mmax_list=[1]", "train.max_epochs=null",
             "train.warmup_epochs=null", "train.max_steps=3", "train.warmup_steps=1",
             "train.eval_every=3", "train.tensorboard=false", "data.num_workers=0",
             "train.device=cpu"]  # fmt: skip
    return sets


def test_is2re_config_trains_with_and_without_the_auxiliary_task(is2re_files, tmp_path):
    first = open_dataset(is2re_files["train"])[0]
    assert "energy_relaxed" in first.info and first.targets["pos_relaxed"].shape == (len(first), 3)
    sets = _sets(is2re_files)
    aux = load_run_config(REPO / "configs/is2re_direct.yaml", sets)
    metrics = run_training(aux, tmp_path / "aux", progress=False)
    assert {"energy_relaxed_mae", "relaxed_displacement_mae"} <= set(metrics["test"])
    assert metrics["test"]["energy_relaxed_mae"] > 0
    direct = load_run_config(
        REPO / "configs/is2re_direct.yaml", [*sets, "data.target=energy_relaxed"]
    )
    assert direct.model.heads == {"energy_relaxed": {"module": "scalar_head", "reduce": "sum",
                                                     "unit": "eV"}}  # fmt: skip
    metrics = run_training(direct, tmp_path / "direct", progress=False)
    assert set(metrics["test"]) == {"energy_relaxed_mae", "energy_relaxed_rmse", "n_structures"}


def _columns(out) -> list[str]:
    return (out / "log.csv").read_text().splitlines()[0].split(",")


def test_is2re_trains_with_equiformers_noisy_nodes(is2re_files, tmp_path):
    sets = [*_sets(is2re_files), IS2RE_NOISY_NODES]
    run = load_run_config(REPO / "configs/is2re_direct.yaml", sets)
    nn = run.task.denoising
    assert (nn.kind, nn.prob, nn.noise.std, nn.noise.structure_prob) == (
        "relaxed_interpolation", 1.0, 0.3, 0.5)  # fmt: skip
    assert "denoising" not in run.model.heads  # the IS2RS head is the denoiser
    metrics = run_training(run, tmp_path / "nn", progress=False)
    assert metrics["test"]["energy_relaxed_mae"] > 0
    assert "denoising_loss" not in _columns(tmp_path / "nn")
    # Gaussian Noisy Nodes with its own head works on IS2RE as well
    gaussian = ["train.denoising={prob: 1.0, std: 0.1, coefficient: 1.0}",
                "model.heads={denoising: {module: position_denoising_head}}"]  # fmt: skip
    run = load_run_config(REPO / "configs/is2re_direct.yaml", [*_sets(is2re_files), *gaussian])
    assert set(run.model.heads) == {"energy_relaxed", "relaxed_displacement", "denoising"}
    run_training(run, tmp_path / "gauss", progress=False)
    assert "denoising_loss" in _columns(tmp_path / "gauss")


def test_relaxed_interpolation_is_refused_where_it_cannot_apply():
    def task(**sections):
        return parse_run_config(sections, "is2re.yaml").task

    relaxed = {"kind": "relaxed_interpolation"}
    with pytest.raises(ValueError, match="coefficient.*loss.<displacement target>.coefficient"):
        task(train={"denoising": {**relaxed, "coefficient": 5}})
    with pytest.raises(ValueError, match="needs a displacement target"):
        task(train={"denoising": relaxed})  # S2EF
    with pytest.raises(ValueError, match="needs a displacement target"):
        task(train={"denoising": relaxed}, outputs={"energy_relaxed": {"extensive": True}})
    with pytest.raises(ValueError, match="kind='shaken'"):
        task(train={"denoising": {"kind": "shaken"}})
    ok = task(train={"denoising": relaxed},
              outputs={"e": {}, "d": {"kind": "displacement"}})  # fmt: skip
    assert ok.denoising.to_dict() == {"kind": "relaxed_interpolation", "prob": 0.5, "std": 0.3,
                                      "structure_prob": 0.5, "min_factor": 0.0}  # fmt: skip
