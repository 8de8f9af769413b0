"""Noisy Nodes for property-only training (named targets, no forces) and its config checks.

IS2RE's Noisy Nodes (``kind: relaxed_interpolation``) runs end to end in test_is2re.py.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import write

from eqv2.model import EquiformerV2, Potential
from eqv2.train.loader import iterate
from eqv2.train.losses import property_loss
from eqv2.train.objective import Objective
from eqv2.train.run_config import load_run_config, parse_run_config
from eqv2.train.target_fit import stream_statistics
from eqv2.train.trainer import Trainer
from eqv2.train.workflow import fit_targets, loader_config, read_labelled, run_training
from tests.conftest import REPO
from tests.tiny import TINY_MODEL

DENOISER = {"denoising": {"module": "position_denoising_head"}}
NOISY = {"prob": 1.0, "coefficient": 2.0, "std": 0.05}
TRAIN = {"max_steps": 3, "lr": 2e-3, "warmup_steps": 1, "max_atoms_per_batch": 24,
         "eval_every": 3, "checkpoint_every": 1000, "ema_decay": None, "tensorboard": False,
         "device": "cpu"}  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Rattled Cu cells with random Pt and a property ``npt`` (the Pt count), no energy or
    forces: 12 for training, 4 for validation."""
    rng = np.random.default_rng(0)
    frames = [bulk("Cu", "fcc", a=3.7, cubic=True) for _ in range(16)]
    for k, atoms in enumerate(frames):
        atoms.rattle(0.05, seed=k)
        atoms.numbers[rng.random(len(atoms)) < 0.5] = 78
        atoms.info["npt"] = float((atoms.numbers == 78).sum())
    out = tmp_path_factory.mktemp("noisy_nodes")
    write(out / "train.extxyz", frames[:12])
    write(out / "val.extxyz", frames[12:])
    return out


def _run(files, denoising=None, heads=None):
    model = {**TINY_MODEL, "max_radius": 4.0, "max_neighbors": 12, "alpha_drop": 0.0,
             "drop_path_rate": 0.0}  # fmt: skip
    if heads is not None:
        model["heads"] = heads
    raw = {
        "model": model,
        "train": {**TRAIN, "denoising": denoising},
        "data": {
            "train": str(files / "train.extxyz"),
            "val": str(files / "val.extxyz"),
            "num_workers": 0,
        },  # fmt: skip
        "outputs": {"npt": {"extensive": True}},
        "loss": {"npt": {"fn": "mae", "coefficient": 3.0}},
    }
    return parse_run_config(raw, "noisy_nodes.yaml")


def _trainer(run, out) -> Trainer:
    """The trainer `run_training` would build (no training)."""
    train = read_labelled(run.data.train, run.data, "train", False)
    stats = stream_statistics(train, 0, 1000, 0, task=run.task)
    torch.manual_seed(0)
    normalizers, refs = fit_targets(stats, run.data)
    pot = Potential(EquiformerV2(run.model), normalizers, refs)
    return Trainer(pot, train, out, run.train, loader=loader_config(run.data), task=run.task)


def _log(out) -> list[dict[str, str]]:
    with open(out / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_the_denoising_head_and_term_follow_the_config(files):
    plain = _run(files, heads=DENOISER)
    assert plain.task.denoising is None and plain.task.part_names() == ("npt_loss",)
    assert "denoising" not in plain.model.heads  # only serves training with denoising
    noisy = _run(files, NOISY, heads=DENOISER)
    assert noisy.task.s2ef is None and noisy.task.denoising.coefficient == 2.0
    assert noisy.task.part_names() == ("denoising_loss", "npt_loss")
    assert set(noisy.model.heads) == {"npt", "denoising"}


def test_a_property_task_trains_with_and_without_the_denoising_term(files, tmp_path):
    run_training(_run(files, NOISY, heads=DENOISER), tmp_path / "noisy", progress=False)
    rows = _log(tmp_path / "noisy")
    assert len(rows) == 3 and all(float(r["denoising_loss"]) > 0 for r in rows)
    run_training(_run(files), tmp_path / "plain", progress=False)
    rows = _log(tmp_path / "plain")
    assert "denoising_loss" not in rows[0] and float(rows[0]["npt_loss"]) > 0


def test_a_missing_denoising_head_is_refused_with_the_fix(files, tmp_path):
    with pytest.raises(ValueError, match=r"nothing that predicts the noise.*position_denoising_"):
        run_training(_run(files, NOISY), tmp_path / "run", progress=False)


def test_with_denoising_off_the_property_loss_is_the_plain_mae_bitwise(files, tmp_path):
    trainer = _trainer(_run(files, heads=DENOISER), tmp_path / "plain")
    step = next(iterate([trainer.reader(trainer.train_set)[trainer._plan_of([0, 1, 2, 3])]]))
    batch = step.micro[0]
    pot, objective = trainer.potential, trainer.objective
    graph, corruption = objective.model_input(batch)
    assert graph is batch.graph and corruption is None
    out = pot.model(graph)
    total, parts = objective.loss(out, batch)
    target = pot.normalize("npt", batch.targets["npt"].to(graph["pos"].dtype))
    expected = property_loss(out["npt"], target, "mae")
    assert torch.equal(total, 3.0 * expected) and parts.tolist() == [expected.item()]
    # prob 0: configured but never drawn, the same loss to the bit
    zero = _run(files, {**NOISY, "prob": 0.0}, heads=DENOISER)
    objective0 = Objective(_trainer(zero, tmp_path / "zero").potential, zero.task)
    assert objective0.model_input(batch)[0] is batch.graph
    total0, parts0 = objective0.loss(out, batch)
    assert torch.equal(total0, total) and parts0.tolist() == [0.0, expected.item()]
    # prob 1: the model sees moved atoms and the total gains the denoising term
    noisy = _run(files, NOISY, heads=DENOISER)
    objective1 = Objective(_trainer(noisy, tmp_path / "noisy").potential, noisy.task)
    graph1, corruption1 = objective1.model_input(batch)
    assert corruption1 is not None and not torch.equal(graph1["pos"], graph["pos"])
    out1 = objective1.potential.model(graph1)
    total1, parts1 = objective1.loss(out1, batch, corruption=corruption1)
    npt1 = property_loss(out1["npt"], target, "mae")  # the clean label of a moved structure
    torch.testing.assert_close(parts1[1], npt1.double())
    torch.testing.assert_close(total1, 3.0 * npt1 + 2.0 * parts1[0].to(total1.dtype))
    assert parts1[0] > 0


def test_the_qm9_noisy_nodes_switch_of_the_config_header_parses():
    header = (REPO / "configs/qm9.yaml").read_text()
    sets = [
        "model.heads={denoising: {module: position_denoising_head}}",
        "train.denoising={prob: 0.5, coefficient: 5, std: 0.02, corrupt_ratio: 0.25}",
    ]
    assert all(s.split("=", 1)[0] in header for s in sets)
    run = load_run_config(REPO / "configs/qm9.yaml", [*sets, "data.target=gap"])
    assert set(run.model.heads) == {"gap", "denoising"} and run.task.s2ef is None
    assert run.task.denoising.noise.corrupt_ratio == 0.25
    assert run.task.part_names() == ("denoising_loss", "gap_loss")
