"""Stress training (the OMat24 recipe): losses, fitted normalisers, metrics, labels, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from eqv2.data import DataError
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.model.loading import load_model, save_model
from eqv2.so3.rank2 import rank2_to_irreps
from eqv2.train.losses import stress_losses
from eqv2.train.metrics import StressAccumulator, format_metrics, s2ef_metrics
from eqv2.train.objective import LossSpec
from eqv2.train.run_config import parse_run_config
from eqv2.train.target_fit import TargetStatistics, stream_statistics
from eqv2.train.trainer import Trainer, TrainerConfig
from eqv2.train.workflow import fit_targets, run_training
from tests.tiny import tiny

HEADS = {
    "energy": {"module": "equiformer_v2_energy_head"},
    "forces": {"module": "equiformer_v2_force_head"},
    "stress": {"module": "rank2_symmetric_head", "decompose": True},
}
TINY_STRESS = tiny(
    ffn_hidden_channels=8, lmax_list=[2], mmax_list=[1], grid_resolution=8, max_radius=4.0,
    max_neighbors=12, norm_type="layer_norm_sh", alpha_drop=0.0, drop_path_rate=0.0,
    max_num_elements=30, heads=HEADS,
)  # fmt: skip
STRESS_ON = dict(
    energy_loss="per_atom_mae", energy_coefficient=2.5, force_coefficient=10.0,
    stress_isotropic_coefficient=1.0, stress_anisotropic_coefficient=1.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def crystals():
    """Strained, rattled Cu and Al cells labelled by EMT (energy, forces, stress)."""
    out = []
    for k in range(12):
        rng = np.random.default_rng(k)
        atoms = bulk("Cu" if k % 2 else "Al", "fcc", a=3.7 if k % 2 else 4.05, cubic=k % 3 == 0)
        e = rng.uniform(-0.04, 0.04, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (e + e.T) / 2), scale_atoms=True)
        atoms = atoms.repeat((2, 1, 1))
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                      stress=atoms.get_stress())  # fmt: skip
        atoms.calc = SinglePointCalculator(atoms, **labels)
        out.append(atoms)
    return out


def _potential(crystals, seed=0) -> Potential:
    torch.manual_seed(seed)
    normalizers, refs = fit_targets(stream_statistics(crystals), parse_run_config({}).data)
    return Potential(EquiformerV2(EquiformerV2Config(**TINY_STRESS)), normalizers,
                     torch.as_tensor(refs))  # fmt: skip


def test_stress_training_lowers_the_stress_loss_and_reports_stress_metrics(crystals, tmp_path):
    pot = _potential(crystals)
    # the stress terms weigh most here, so that 30 steps show them learning
    weights = {**STRESS_ON, "stress_isotropic_coefficient": 10.0,
               "stress_anisotropic_coefficient": 10.0, "force_coefficient": 1.0}  # fmt: skip
    config = TrainerConfig(max_steps=30, lr=5e-3, warmup_steps=3, max_atoms_per_batch=16,
                           checkpoint_every=1000, eval_every=1000, ema_decay=None,
                           tensorboard=False, **weights)  # fmt: skip
    rows = []
    trainer = Trainer(pot, crystals, tmp_path, config, val=crystals[:4], on_step=rows.append)
    before = trainer.validate(crystals)
    trainer.fit()
    after = trainer.validate(crystals)
    keys = ("stress_mae", "stress_mae_gpa", "stress_isotropic_mae", "stress_anisotropic_mae")
    assert all(k in before and k in after for k in keys) and after["n_stress"] == 12
    # measured: stress MAE 0.0115 -> 0.0098 eV/Å³ on the whole set
    assert after["stress_mae"] < 0.95 * before["stress_mae"], (before, after)
    first = np.mean([r["stress_isotropic_loss"] + r["stress_anisotropic_loss"] for r in rows[:5]])
    last = np.mean([r["stress_isotropic_loss"] + r["stress_anisotropic_loss"] for r in rows[-5:]])
    assert last < first, (first, last)
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"stress_isotropic_loss", "val_stress_mae"} <= set(header)


def test_stress_normalisers_follow_fairchems_fit(crystals):
    stats = stream_statistics(crystals)
    norm = stats.normalizers()
    stress = torch.tensor(np.stack([a.get_stress(voigt=False) for a in crystals]))
    iso, aniso = (t.numpy() for t in rank2_to_irreps(stress))
    n = len(crystals)
    # fairchem 1.10 fit_normalizers: mean over all values, rmsd = sqrt(Σ (x − mean)² / (n − 1))
    # with n the number of structures (rows), whatever the number of components per row
    for values, key in ((iso, "stress_isotropic"), (aniso, "stress_anisotropic")):
        mean = values.mean()
        rmsd = np.sqrt(((values - mean) ** 2).sum() / (n - 1))
        assert norm[key]["mean"] == pytest.approx(mean, rel=1e-10)
        assert norm[key]["std"] == pytest.approx(rmsd, rel=1e-10)
    np.testing.assert_allclose(stats.mean_stress(), stress.numpy().mean(axis=0), rtol=1e-12)
    # structures without a stress label do not count; none at all: no stress normalisers
    unlabelled = TargetStatistics()
    unlabelled.add([a.numbers for a in crystals], [0.0] * n, [a.get_forces() for a in crystals],
                   [None] * n)  # fmt: skip
    assert "stress_isotropic" not in unlabelled.normalizers() and unlabelled.mean_stress() is None


def test_targets_invert_the_composition_and_normalisers_round_trip(crystals, tmp_path):
    pot = _potential(crystals)
    pot.normalizers["stress"] = {"mean": 0.001, "std": 2.0}  # a fairchem file may have one
    stress = torch.tensor(np.stack([a.get_stress(voigt=False) for a in crystals[:3]]))
    iso, aniso = pot.stress_targets(stress)
    raw = {"energy": torch.zeros(3), "stress_isotropic": iso, "stress_anisotropic": aniso}
    graph = pot.build_graph(crystals[:3])
    recomposed = pot._denormalize(raw, graph)["stress"]
    torch.testing.assert_close(recomposed, stress, rtol=1e-12, atol=1e-15)
    path = save_model(pot, tmp_path / "model.pt")
    loaded = load_model(path, dtype=torch.float64)
    assert loaded.normalizers == pot.normalizers
    assert {"stress_isotropic", "stress_anisotropic", "stress"} <= set(loaded.normalizers)
    a = pot.to(torch.float64).predict(crystals[:2], stress=True)
    b = loaded.predict(crystals[:2], stress=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x["stress"], y["stress"], rtol=1e-12, atol=1e-15)


def test_missing_stress_labels_are_named_and_models_without_a_stress_head_refused(
    crystals, tmp_path
):
    unlabelled = [a.copy() for a in crystals[:4]]
    for k, atoms in enumerate(unlabelled):
        src = crystals[k]
        results = dict(energy=src.get_potential_energy(), forces=src.get_forces())
        if k != 2:
            results["stress"] = src.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
    config = TrainerConfig(max_steps=2, max_atoms_per_batch=64, tensorboard=False, **STRESS_ON)
    trainer = Trainer(_potential(crystals), unlabelled, tmp_path, config)
    with pytest.raises(DataError, match=r"train structure 2 \(the stress loss is on\).*'stress'"):
        trainer.fit()
    no_head = {k: v for k, v in TINY_STRESS.items() if k != "heads"}
    plain = Potential(EquiformerV2(EquiformerV2Config(**no_head)))
    with pytest.raises(ValueError, match="no decomposed stress head.*rank2_symmetric_head"):
        Trainer(plain, crystals, tmp_path / "plain", config)
    with pytest.raises(ValueError, match="stress_isotropic_coefficient=-1"):
        TrainerConfig(stress_isotropic_coefficient=-1)
    assert LossSpec().part_names() == ("energy_loss", "force_loss")


def test_stress_losses_and_metrics_by_hand():
    pred_iso, pred_aniso = torch.tensor([[1.0], [3.0]]), torch.arange(10.0).reshape(2, 5)
    iso, aniso = stress_losses(pred_iso, pred_aniso, torch.zeros(2, 1), torch.zeros(2, 5))
    assert iso.item() == 2.0 and aniso.item() == pytest.approx(4.5)
    # over a larger batch's structure count: parts of a batch add up
    iso, aniso = stress_losses(pred_iso, pred_aniso, torch.zeros(2, 1), torch.zeros(2, 5), 4)
    assert iso.item() == 1.0 and aniso.item() == pytest.approx(45 / 20)
    acc = StressAccumulator()
    ref = torch.zeros(3, 3, 3)
    ref[2] = float("nan")  # no label: left out
    pred = torch.zeros(3, 3, 3)
    pred[0] = torch.eye(3) * 0.003  # pure pressure error: |Δiso| = 0.003·√3, no l=2 part
    acc.update(pred, ref)
    m = acc.compute()
    assert m["n_stress"] == 2
    assert m["stress_mae"] == pytest.approx(0.009 / 18)
    assert m["stress_isotropic_mae"] == pytest.approx(0.003 * np.sqrt(3) / 2)
    assert m["stress_anisotropic_mae"] == pytest.approx(0.0, abs=1e-15)
    assert m["stress_mae_gpa"] == pytest.approx(m["stress_mae"] * 160.21766, rel=1e-6)
    assert StressAccumulator().compute() == {}
    merged = StressAccumulator()
    merged.set_totals(acc.totals() + acc.totals())
    assert merged.compute()["stress_mae"] == pytest.approx(m["stress_mae"])
    plain = s2ef_metrics(np.zeros(1), np.zeros(1), np.zeros((1, 3)), np.zeros((1, 3)), [0])
    table = format_metrics({"val": {**plain, **m}, "other": plain})
    assert "stress MAE (GPa)" in table.splitlines()[0]


def test_workflow_writes_stress_metrics_and_the_mean_baseline(crystals, tmp_path):
    import ase.io

    ase.io.write(tmp_path / "train.extxyz", crystals[:8])
    ase.io.write(tmp_path / "val.extxyz", crystals[8:])
    raw = {
        "model": TINY_STRESS,
        "train": dict(
            max_steps=3, max_atoms_per_batch=16, eval_every=3, tensorboard=False, **STRESS_ON
        ),  # fmt: skip
        "data": dict(
            train=str(tmp_path / "train.extxyz"),
            val=str(tmp_path / "val.extxyz"),
            num_workers=0,
            train_eval_structures=0,
        ),  # fmt: skip
    }
    run_training(parse_run_config(raw), tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("val", "val_baseline"):
        assert metrics[split]["n_stress"] == 4 and metrics[split]["stress_mae"] > 0
    baseline_mean = np.mean([a.get_stress(voigt=False) for a in crystals[:8]], axis=0)
    val = np.stack([a.get_stress(voigt=False) for a in crystals[8:]])
    expected = np.abs(val - baseline_mean).mean()
    assert metrics["val_baseline"]["stress_mae"] == pytest.approx(expected, rel=1e-6)
    final = load_model(tmp_path / "run" / "final.pt")
    assert "stress_anisotropic" in final.normalizers


def test_eqv2_evaluate_scores_a_stress_head_on_stress_labels(checkpoints_dir, tmp_path, capsys):
    """`eqv2 evaluate` on the OMat fixture: stress columns on screen and in the JSON."""
    import ase.io

    from eqv2.cli import main

    frames = ase.io.read(checkpoints_dir.parent.parent / "data/bulk_stress/mlearn_Si_test.extxyz",
                         ":2")  # fmt: skip
    ase.io.write(tmp_path / "si.extxyz", frames)
    out = tmp_path / "metrics.json"
    ckpt = checkpoints_dir / "omat_stress_small.pt"
    assert main(["evaluate", str(ckpt), str(tmp_path / "si.extxyz"), "--out", str(out)]) == 0
    assert "stress MAE (GPa)" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert metrics["n_stress"] == 2 and metrics["stress_mae_gpa"] > 0
