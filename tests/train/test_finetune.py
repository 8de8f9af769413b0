"""Fine-tuning from eqv2 and fairchem checkpoints (eqv2.train.finetune, eqv2 train --init)."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
import torch
import yaml
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import eqv2
from eqv2.cli import main
from eqv2.data import read_structures, to_atoms
from eqv2.data.generate import generate_dataset
from eqv2.fairchem import from_fairchem_state_dict
from eqv2.graph import fixed_mask
from eqv2.model import EquiformerV2, EquiformerV2Config
from eqv2.model.checkpoint import CheckpointError
from eqv2.model.loading import save_model
from eqv2.train.finetune import freeze_parameters, merge_model_config, start_finetune
from eqv2.train.run_config import parse_run_config
from eqv2.train.target_fit import TargetStatistics
from eqv2.train.trainer import Trainer, TrainerConfig
from eqv2.train.workflow import fit_targets
from tests.model.reference_cases import atoms_of
from tests.tiny import TINY_MODEL, fitted_potential

#: the shared tiny model with the grid MLP, the separable norm and no dropout
SOURCE = dict(
    **TINY_MODEL,
    max_radius=4.5,
    max_neighbors=12,
    norm_type="layer_norm_sh",
    use_grid_mlp=True,
    alpha_drop=0.0,
    drop_path_rate=0.0,
)
# one batch holding every structure, so the logged loss of step 1 is the whole set's loss
TRAIN = dict(lr=2e-3, warmup_steps=0, max_atoms_per_batch=100_000, ema_decay=None,
             force_coefficient=10.0, checkpoint_every=1000, eval_every=1000)  # fmt: skip


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _log_losses(out_dir) -> list[float]:
    with open(out_dir / "log.csv", newline="") as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def _loss_from_predictions(energies, forces, data, normalizers, cfg) -> float:
    """λ_E·energy MAE + λ_F·force L2MAE (free atoms) in normalised units, from predictions in
    eV and eV/Å: what the trainer's first step must report for a model with these outputs
    (``data``: the labelled ase.Atoms)."""
    labels = np.array([a.get_potential_energy() for a in data])
    e_err = np.abs(np.asarray(energies) - labels) / normalizers["energy"]["std"]
    free = np.concatenate([~fixed_mask(a) for a in data])
    reference = np.concatenate([a.get_forces(apply_constraint=False) for a in data])
    f_err = np.linalg.norm(np.concatenate(forces) - reference, axis=1)
    f_err = f_err[free] / normalizers["forces"]["std"]
    return cfg["energy_coefficient"] * e_err.mean() + cfg["force_coefficient"] * f_err.mean()


@pytest.fixture(scope="module")
def frames():
    ds = generate_dataset(2, seed=5, relax_steps=3, rattle_frames=1, sizes=((2, 2),), layers=(3,))
    return ds.s2ef_frames[:6]


@pytest.fixture(scope="module")
def source(frames, tmp_path_factory):
    """A tiny model trained 3 steps: its training-state checkpoint.pt (with EMA) and final.pt."""
    out = tmp_path_factory.mktemp("source")
    pot = fitted_potential(frames, SOURCE)
    trainer = Trainer(pot, frames, out, TrainerConfig(max_steps=3, **{**TRAIN, "ema_decay": 0.5}))
    trainer.fit()
    with trainer.ema.applied(pot.model):
        save_model(pot, out / "final.pt")
    data = out / "train.extxyz"
    write(data, frames)
    return out


def _run(source_dir, tmp_path, finetune=None, model=None, max_steps=4, **train):
    raw = {
        "train": {"max_steps": max_steps, **TRAIN, **train},
        "data": {"train": str(source_dir / "train.extxyz")},
        "finetune": {"init_from": str(source_dir / "final.pt"), **(finetune or {})},
    }
    if model is not None:
        raw["model"] = model
    return parse_run_config(raw, "finetune.yaml")


# -- from an eqv2 checkpoint ----------------------------------------------------------------------


def test_starting_point_is_the_checkpoint(source, frames, tmp_path):
    run = _run(source, tmp_path)
    train = frames
    potential, resolved = start_finetune(run, train, tmp_path)
    original = eqv2.load_model(source / "final.pt")
    for (name, a), b in zip(
        potential.model.state_dict().items(), original.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert potential.normalizers == original.normalizers
    torch.testing.assert_close(
        potential.element_references, original.element_references, check_dtype=False
    )
    assert resolved.model == original.config  # no model section: the checkpoint's config
    # use_ema on the training-state file takes its EMA shadow, not the raw weights
    ema_run = _run(source, tmp_path, {"init_from": str(source / "checkpoint.pt"), "use_ema": True})
    ema_potential, _ = start_finetune(ema_run, train, tmp_path)
    shadow = torch.load(source / "checkpoint.pt", weights_only=True)["extra"]["training_state"]
    for name, value in shadow["ema"]["shadow"].items():
        torch.testing.assert_close(dict(ema_potential.model.named_parameters())[name], value)
    raw_run = _run(source, tmp_path, {"init_from": str(source / "checkpoint.pt")})
    raw_potential, _ = start_finetune(raw_run, train, tmp_path)
    weight = "energy_block.so3_linear_1.weight"
    assert not torch.equal(raw_potential.model.state_dict()[weight],
                           ema_potential.model.state_dict()[weight])  # fmt: skip


def test_refit_targets_and_dropout_override(source, frames, tmp_path):
    train = frames[:3]
    run = _run(source, tmp_path, {"targets": "refit"}, model={"alpha_drop": 0.3})
    potential, resolved = start_finetune(run, train, tmp_path)
    normalizers, refs = fit_targets(train, run.data)
    assert potential.normalizers == {k: dict(v) for k, v in normalizers.items()}
    torch.testing.assert_close(potential.element_references, torch.as_tensor(refs))
    assert resolved.model.alpha_drop == 0.3 and potential.config.alpha_drop == 0.3
    original = eqv2.load_model(source / "final.pt")
    torch.testing.assert_close(potential.model.state_dict(), original.model.state_dict())


def test_mismatched_model_config_names_the_fields(source, frames, tmp_path):
    run = _run(source, tmp_path, model={"num_layers": 3, "lmax_list": [2], "max_radius": 6.0})
    with pytest.raises(ValueError) as info:
        start_finetune(run, frames, tmp_path)
    message = str(info.value)
    assert "finetune.yaml" in message and "final.pt" in message
    assert "model.num_layers=3 (checkpoint: 1)" in message
    assert "model.max_radius=6.0 (checkpoint: 4.5)" in message
    assert "lmax_list" not in message  # equal values are fine


def test_merge_model_config_rules():
    ckpt = EquiformerV2Config(**SOURCE)
    same = EquiformerV2Config(**{**SOURCE, "weight_init": "uniform"})
    assert merge_model_config(same, ["weight_init", "otf_graph"], ckpt, "x", "y") is ckpt
    drop = EquiformerV2Config(**{**SOURCE, "drop_path_rate": 0.1})
    assert merge_model_config(drop, ["drop_path_rate"], ckpt, "x", "y").drop_path_rate == 0.1
    # keys the run config did not set take the checkpoint's value, whatever their default
    assert merge_model_config(EquiformerV2Config(), [], ckpt, "x", "y") is ckpt


def test_freeze_backbone_trains_only_the_heads(source, frames, tmp_path):
    run = _run(source, tmp_path, {"freeze": ["backbone"]}, max_steps=2)
    potential, _ = start_finetune(run, frames, tmp_path)
    before = {k: v.clone() for k, v in potential.model.state_dict().items()}
    Trainer(potential, frames, tmp_path / "t", run.train).fit()
    after = potential.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("energy_block.", "force_block.")) for k in changed)
    assert after["sphere_embedding.weight"].equal(before["sphere_embedding.weight"])


def test_freeze_patterns():
    model = EquiformerV2(EquiformerV2Config(**SOURCE))
    frozen = freeze_parameters(model, ["sphere_embedding", "blocks.0.ga"])
    assert "sphere_embedding.weight" in frozen and all(
        n == "sphere_embedding.weight" or n.startswith("blocks.0.ga.") for n in frozen
    )
    assert not model.sphere_embedding.weight.requires_grad
    assert model.energy_block.so3_linear_1.weight.requires_grad
    with pytest.raises(ValueError, match="'blocks.7' matches no trainable parameter.*backbone"):
        freeze_parameters(model, ["blocks.7"])
    with pytest.raises(ValueError, match="freezes every parameter"):
        freeze_parameters(EquiformerV2(EquiformerV2Config(**SOURCE)), ["backbone", "heads"])


def test_bad_finetune_settings_are_refused(source, frames, tmp_path):
    train = frames
    with pytest.raises(ValueError, match="would overwrite it"):
        start_finetune(_run(source, tmp_path), train, source)
    with pytest.raises(ValueError, match="data.e0s is set"):
        run = _run(source, tmp_path)
        run.data.e0s = {"Cu": -1.0}
        start_finetune(run, train, tmp_path)
    with pytest.raises(ValueError, match=r"\[finetune\]: targets='new'"):
        parse_run_config({"finetune": {"targets": "new"}}, "run.yaml")
    with pytest.raises(ValueError, match=r"\[finetune\]: unknown key 'init'.*'init_from'"):
        parse_run_config({"finetune": {"init": "x.pt"}}, "run.yaml")
    with pytest.raises(CheckpointError, match="holds no EMA weights"):
        eqv2.load_model(source / "final.pt", use_ema=True)
    with pytest.raises(FileNotFoundError):
        start_finetune(
            _run(source, tmp_path, {"init_from": str(tmp_path / "no.pt")}), train, tmp_path
        )


def test_cli_finetune_run(source, tmp_path, capsys):
    """eqv2 train --init: starts at the checkpoint's loss, lowers it, leaves the file alone."""
    config = tmp_path / "ft.yaml"  # no model section: the checkpoint's config is used
    config.write_text(yaml.safe_dump({"train": {"max_steps": 4, **TRAIN}}))
    out, checkpoint = tmp_path / "run", source / "checkpoint.pt"
    before = _sha(checkpoint)
    code = main(["train", str(config), "--train", str(source / "train.extxyz"), "--out", str(out),
                 "--init", str(checkpoint), "--set", "finetune.use_ema=true",
                 "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert _sha(checkpoint) == before
    losses = _log_losses(out)
    # the structures as the run read them (a max_neighbors cap makes the graph sensitive to the
    # last digits of positions, which an extxyz round trip changes)
    train = [to_atoms(s) for s in read_structures(source / "train.extxyz")]
    start = eqv2.load_model(checkpoint, use_ema=True)
    pred = start.predict(train)
    coefficients = {"energy_coefficient": 1.0, "force_coefficient": TRAIN["force_coefficient"]}
    expected = _loss_from_predictions([p["energy"] for p in pred], [p["forces"] for p in pred],
                                      train, start.normalizers, coefficients)  # fmt: skip
    assert losses[0] == pytest.approx(expected, rel=1e-5)
    assert losses[-1] < losses[0], losses
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["finetune"]["init_from"] == str(checkpoint)
    assert written["model"] == start.config.to_dict()

    config.write_text("model:\n  num_layers: 4\ntrain:\n  max_steps: 2\n")
    code = main(["train", str(config), "--train", str(source / "train.extxyz"), "--out",
                 str(tmp_path / "bad"), "--init-from", str(source / "final.pt")])  # fmt: skip
    assert code == 2 and "model.num_layers=4 (checkpoint: 1)" in capsys.readouterr().err


# -- from fairchem checkpoint files (../shared/reference/checkpoints) ----------------------------


REFERENCE_STRUCTURES = (1, 2)  # bulk Cu (8 atoms) and ethanol (9 atoms): cheap steps


def _labelled_reference(reference_npz, exp: dict) -> list:
    """Reference structures labelled with OCPCalculator's outputs for a checkpoint, shifted by
    known amounts so that the loss is not zero."""
    rng = np.random.default_rng(0)
    out = []
    for i in REFERENCE_STRUCTURES:
        atoms = atoms_of(reference_npz, i)
        forces = np.asarray(exp["forces"][i]) + 0.05 * rng.standard_normal((len(atoms), 3))
        atoms.calc = SinglePointCalculator(atoms, energy=exp["energy"][i] + 0.3 * (i + 1),
                                           forces=forces)  # fmt: skip
        out.append(atoms)
    return out


@pytest.mark.parametrize(
    ("name", "use_ema"),
    [("fairchem1_hydra", False), ("legacy_oc20_monolithic", True)],
)
def test_finetune_from_fairchem_checkpoint(checkpoints_dir, reference_npz, tmp_path, name,
                                           use_ema):  # fmt: skip
    path = checkpoints_dir / f"{name}.pt"
    exp = json.loads((checkpoints_dir / f"{name}.expected.json").read_text())
    before = _sha(path)
    train = _labelled_reference(reference_npz, exp)
    cfg = dict(energy_coefficient=2.0, force_coefficient=20.0)
    run = parse_run_config(
        {"train": {"max_steps": 2, **TRAIN, **cfg, "lr": 1e-5},
         "finetune": {"init_from": str(path), "use_ema": use_ema}}, "ft.yaml",
    )  # fmt: skip
    potential, _ = start_finetune(run, train, tmp_path)

    # starting weights: the file's (EMA shadow or state_dict), by parameter name
    raw = torch.load(path, weights_only=True)
    params, _, _ = from_fairchem_state_dict(raw["state_dict"])
    if use_ema:
        shadow = dict(zip(exp["ema_param_keys"], raw["ema"]["shadow_params"], strict=True))
        params = params | from_fairchem_state_dict(shadow)[0]
    start = potential.model.state_dict()
    for key, value in params.items():
        torch.testing.assert_close(start[key], value, rtol=0, atol=0, msg=key)

    # loss at step 0 = the loss of fairchem's own predictions with these weights
    alt = exp["alternatives"]
    energies = alt["energy_with_ema_weights"] if use_ema else exp["energy"]
    forces = alt["forces_with_ema_weights"] if use_ema else exp["forces"]
    energies = [energies[i] for i in REFERENCE_STRUCTURES]
    forces = [np.asarray(forces[i]) for i in REFERENCE_STRUCTURES]
    expected = _loss_from_predictions(energies, forces, train, potential.normalizers, cfg)
    e_std, f_std = (potential.normalizers[k]["std"] for k in ("energy", "forces"))
    tol = (cfg["energy_coefficient"] * (1e-4 + 1e-6 * np.abs(energies).max()) / e_std
           + cfg["force_coefficient"] * 1e-5 / f_std)  # fmt: skip
    losses = []
    Trainer(potential, train, tmp_path, run.train, on_step=lambda r: losses.append(r["loss"])).fit()
    assert abs(losses[0] - expected) <= tol, (losses[0], expected, tol)
    assert losses[1] < losses[0], losses
    assert _sha(path) == before


def test_fairchem_checkpoint_config_mismatch(checkpoints_dir, tmp_path):
    run = parse_run_config(
        {"model": {"sphere_channels": 64, "num_layers": 2},
         "finetune": {"init_from": str(checkpoints_dir / "fairchem1_hydra.pt")}}, "ft.yaml",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"model.sphere_channels=64 \(checkpoint: 32\)") as info:
        start_finetune(run, TargetStatistics(), tmp_path)
    assert "num_layers" not in str(info.value)
