"""Denoising training (Noisy Nodes and DeNS): the loss, the heads, the recipe, the round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from scipy.spatial.transform import Rotation

from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.model.loading import export_fairchem, load_model
from eqv2.train.corruption import PositionNoise
from eqv2.train.denoising import DenoisingConfig, hybrid_force_denoising_loss
from eqv2.train.loader import LoaderConfig
from eqv2.train.objective import LossSpec, Objective
from eqv2.train.run_config import parse_run_config
from eqv2.train.target_fit import stream_statistics
from eqv2.train.trainer import Trainer, TrainerConfig
from eqv2.train.workflow import fit_targets
from tests.tiny import tiny

BASE = tiny(ffn_hidden_channels=8, lmax_list=[2], mmax_list=[1], grid_resolution=8,
            max_radius=4.0, max_neighbors=12, norm_type="layer_norm_sh", alpha_drop=0.0,
            drop_path_rate=0.0, max_num_elements=30)  # fmt: skip
DENS_HEADS = {
    "energy": {"module": "DeNSScalarHead", "use_denoising": True},
    "forces": {"module": "DeNSVectorHead"},
}
NOISY_NODES_HEADS = {
    "energy": {"module": "equiformer_v2_energy_head"},
    "forces": {"module": "equiformer_v2_force_head"},
    "denoising": {"module": "position_denoising_head"},
}
ALWAYS = {"prob": 1.0, "coefficient": 10.0, "std": 0.1}


@pytest.fixture(scope="module")
def frames():
    out = []
    for k in range(8):
        atoms = bulk("Cu" if k % 2 else "Al", "fcc", a=3.7 if k % 2 else 4.05) * (2, 1, 1)
        atoms.rattle(0.08, seed=k)
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        out.append(atoms)
    return out


def _potential(frames, heads, seed=0, **model) -> Potential:
    torch.manual_seed(seed)
    normalizers, refs = fit_targets(stream_statistics(frames), parse_run_config({}).data)
    config = EquiformerV2Config(**{**BASE, "heads": heads, **model})
    return Potential(EquiformerV2(config), normalizers, torch.as_tensor(refs))


def _trainer(pot, frames, out, denoising, steps=4, lr=2e-3, **kw) -> Trainer:
    config = TrainerConfig(max_steps=steps, lr=lr, warmup_steps=1, max_atoms_per_batch=8,
                           checkpoint_every=1000, eval_every=1000, ema_decay=None,
                           tensorboard=False, denoising=denoising, **kw)  # fmt: skip
    return Trainer(pot, frames, out, config, loader=LoaderConfig(num_workers=0))


def test_config_reads_fairchems_names_and_refuses_unknown_keys():
    c = DenoisingConfig.from_dict({"prob": 0.25, "std": 0.2, "corrupt_ratio": 0.5})
    assert (c.prob, c.coefficient, c.noise.std, c.noise.corrupt_ratio) == (0.25, 10.0, 0.2, 0.5)
    assert DenoisingConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown key.*'sigma'.*valid keys"):
        DenoisingConfig.from_dict({"sigma": 0.1})
    with pytest.raises(ValueError, match="prob=1.5"):
        DenoisingConfig.from_dict({"prob": 1.5})
    with pytest.raises(ValueError, match="train"):
        parse_run_config({"train": {"denoising": {"prob": 2}}})
    run = parse_run_config({"train": {"denoising": {"prob": 0.5}}})
    assert run.train.loss_spec().denoising.prob == 0.5
    assert run.train.loss_spec().part_names()[-1] == "denoising_loss"


def test_hybrid_loss_weighs_clean_and_corrupted_atoms_like_fairchem():
    torch.manual_seed(0)
    n = 6
    mask = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    noise = torch.randn(n, 3) * mask[:, None] * 0.1
    from eqv2.train.corruption import Corruption

    c = Corruption({}, noise, mask, 0.1)
    fp, ft, npred = torch.randn(n, 3), torch.randn(n, 3), torch.randn(n, 3)
    counted = torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.bool)  # atom 3 fixed
    force, denoise = hybrid_force_denoising_loss(fp, ft, npred, c, counted)
    # fairchem: per-atom L2 error, weighted, mean over the loss mask (free | corrupted)
    target = torch.where(mask[:, None], noise / 0.1, ft)
    pred = torch.where(mask[:, None], npred, fp)
    err = (pred - target).norm(dim=1)
    keep = counted | mask
    weights = torch.where(mask, 10.0, 2.0)
    expected = (err * weights)[keep].mean()
    torch.testing.assert_close(2.0 * force + 10.0 * denoise, expected)


@pytest.mark.parametrize("heads", [DENS_HEADS, NOISY_NODES_HEADS], ids=["dens", "noisy_nodes"])
def test_denoising_prediction_is_an_equivariant_vector(frames, heads):
    kwargs = {"backbone": "dens"} if heads is DENS_HEADS else {}
    # grid 32: exact S2 activations for lmax 2, so the network is equivariant to round-off
    pot = _potential(frames, heads, grid_resolution=32, **kwargs).to(torch.float64)
    model = pot.model.eval()
    atoms = frames[1]
    rot = Rotation.random(random_state=3).as_matrix()
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rot.T)
    turned.positions = atoms.positions @ rot.T
    forces = torch.as_tensor(atoms.get_forces())
    torch.manual_seed(5)
    out = []
    for a, f in ((atoms, forces), (turned, forces @ torch.as_tensor(rot).T)):
        graph = pot.build_graph([a])
        n = graph["pos"].shape[0]
        graph = {**graph, "denoising_mask": torch.ones(n, dtype=torch.bool),
                 "denoising_forces": f, "denoising_sigmas": torch.full((n, 1), 0.1)}  # fmt: skip
        with torch.no_grad():
            out.append(model(graph))
    torch.testing.assert_close(out[0]["denoising"] @ torch.as_tensor(rot).T, out[1]["denoising"],
                               atol=1e-9, rtol=1e-7)  # fmt: skip
    assert "denoising" not in model(pot.build_graph([atoms]))  # only on corrupted batches


def test_models_without_a_denoiser_or_with_conservative_forces_are_refused(frames):
    spec = LossSpec(denoising=DenoisingConfig())
    plain = _potential(frames, None)
    with pytest.raises(ValueError, match="nothing that predicts the noise"):
        Objective(plain, spec)
    conservative = _potential(frames, None, direct_forces=False)
    conservative.model.denoising_head = object()  # pretend it had one
    with pytest.raises(ValueError, match="direct force heads"):
        Objective(conservative, spec)


@pytest.mark.parametrize("heads", [DENS_HEADS, NOISY_NODES_HEADS], ids=["dens", "noisy_nodes"])
def test_training_steps_fit_the_noise(frames, tmp_path, heads):
    kwargs = {"backbone": "dens"} if heads is DENS_HEADS else {}
    pot = _potential(frames, heads, **kwargs)
    trainer = _trainer(pot, frames, tmp_path, ALWAYS, steps=200, lr=1e-2)
    rows = [trainer.train_step([0, 1]) for _ in range(2)]
    # every batch corrupted, every atom free: no clean-atom force term
    assert all(r["force_loss"] == 0.0 and r["denoising_loss"] > 0 for r in rows)
    assert rows[0]["denoising_loss"] != rows[1]["denoising_loss"]  # fresh noise each step
    # the same corruption every step (same seed): the optimiser must fit that noise
    losses = []
    for _ in range(12):
        torch.manual_seed(7)
        losses.append(trainer.train_step([0, 1])["denoising_loss"])
    assert losses[-1] < 0.8 * losses[0], losses


def test_denoising_loss_is_logged(frames, tmp_path):
    pot = _potential(frames, DENS_HEADS, backbone="dens")
    _trainer(pot, frames, tmp_path, {**ALWAYS, "prob": 0.5}, steps=2).fit()
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert "denoising_loss" in header


def test_prob_zero_is_plain_training_and_energy_switch_is_honoured(frames, tmp_path):
    rows = {}
    for name, denoising in (("plain", None), ("never", {"prob": 0.0})):
        pot = _potential(frames, DENS_HEADS, backbone="dens")
        torch.manual_seed(0)
        trainer = _trainer(pot, frames, tmp_path / name, denoising, steps=2)
        rows[name] = trainer.fit()["train"]
    assert rows["plain"]["loss"] == rows["never"]["loss"]
    assert rows["never"]["denoising_loss"] == 0.0
    heads = {**DENS_HEADS, "energy": {"module": "DeNSScalarHead", "use_denoising": False}}
    pot = _potential(frames, heads, backbone="dens")
    row = _trainer(pot, frames, tmp_path / "noenergy", ALWAYS, steps=1).fit()["train"]
    assert row["energy_loss"] == 0.0 and row["denoising_loss"] > 0


def test_dens_trained_model_round_trips_through_fairchems_dens_layout(frames, tmp_path):
    pot = _potential(frames, DENS_HEADS, backbone="dens")
    recipe = DenoisingConfig.from_dict({**ALWAYS, "prob": 0.5})
    trainer = _trainer(pot, frames, tmp_path, recipe.to_dict(), steps=3)
    trainer.fit()
    path = export_fairchem(pot, tmp_path / "dens_fairchem.pt", denoising=recipe.to_dict())
    ckpt = torch.load(path, weights_only=True)
    optim = ckpt["config"]["optim"]
    assert optim["use_denoising_pos"] is True and optim["denoising_pos_coefficient"] == 10.0
    params = optim["denoising_pos_params"]
    assert (params["prob"], params["std"], params["fixed_noise_std"]) == (0.5, 0.1, True)
    assert float(ckpt["normalizers"]["denoising_pos_target"]["rmsd"]) == pytest.approx(0.1)
    assert ckpt["config"]["model"]["backbone"]["model"].endswith("EqV2DeNSBackbone")
    assert any("denoising_pos_block" in k for k in ckpt["state_dict"])
    loaded = load_model(path)
    assert loaded.config.backbone == "dens"
    for key, value in pot.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value.cpu(), rtol=0, atol=0)
    a, b = pot.predict(frames[:2]), loaded.predict(frames[:2])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x["energy"], y["energy"], rtol=1e-6)
        np.testing.assert_allclose(x["forces"], y["forces"], rtol=1e-5, atol=1e-6)
    from eqv2.fairchem import denoising_recipe

    assert denoising_recipe(ckpt) == recipe.to_dict()


def test_noisy_nodes_head_is_not_exported_to_fairchem(frames, tmp_path):
    pot = _potential(frames, NOISY_NODES_HEADS)
    with pytest.raises(ValueError, match="position_denoising_head"):
        export_fairchem(pot, tmp_path / "nn.pt")


def test_noise_spec_defaults_are_the_dens_mptrj_recipe():
    c = DenoisingConfig()
    assert (c.prob, c.coefficient) == (0.5, 10.0)
    assert c.noise == PositionNoise(std=0.1, fixed_std=True, corrupt_ratio=None)
