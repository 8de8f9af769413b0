"""The command line end to end: generate data, train, evaluate, predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import read

from eqv2.cli import main
from eqv2.data.targets import fit_element_references

TINY_YAML = """
model:
  num_layers: 1
  sphere_channels: 8
  attn_hidden_channels: 8
  num_heads: 2
  attn_alpha_channels: 4
  attn_value_channels: 4
  ffn_hidden_channels: 8
  edge_channels: 8
  lmax_list: [2]
  mmax_list: [1]
  grid_resolution: 8
  max_radius: 4.5
  max_neighbors: 12
  norm_type: layer_norm_sh
  use_grid_mlp: true
train:
  max_steps: 6
  lr: 2e-3
  warmup_steps: 1
  max_atoms_per_batch: 80
  eval_every: 3
  checkpoint_every: 3
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    assert main(["data", "generate", "--out", str(out), "--systems", "3", "--seed", "2",
                 "--relax-steps", "4", "--rattle-frames", "1"]) == 0  # fmt: skip
    return out


def test_train_evaluate_predict(dataset, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    run = tmp_path / "run"
    train, val = str(dataset / "train.extxyz"), str(dataset / "val.extxyz")
    code = main(["train", str(config), "--train", train, "--val", val, "--out", str(run),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    for name in ("final.pt", "best.pt", "checkpoint.pt", "log.csv", "metrics.json",
                 "learning_curves.png", "parity_val.png", "config.yaml"):  # fmt: skip
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["val"]) == {"energy_mae", "force_mae", "force_cos", "efwt", "n_structures"}
    assert "val" in capsys.readouterr().out
    # baselines use the training set's statistics: its mean energy, its element references
    train_e = np.array([a.get_potential_energy() for a in read(train, ":")])
    val_frames = read(val, ":")
    val_e = np.array([a.get_potential_energy() for a in val_frames])
    assert metrics["val_baseline"]["energy_mae"] == pytest.approx(
        np.abs(val_e - train_e.mean()).mean(), rel=1e-9
    )
    refs = fit_element_references([a.numbers for a in read(train, ":")], train_e)
    composition = np.array([refs[a.numbers].sum() for a in val_frames])
    assert metrics["val_element_refs"]["energy_mae"] == pytest.approx(
        np.abs(val_e - composition).mean(), rel=1e-6
    )

    out_json = tmp_path / "m.json"
    assert main(["evaluate", str(run / "final.pt"), str(dataset / "val.extxyz"),
                 "--out", str(out_json)]) == 0  # fmt: skip
    evaluated = json.loads(out_json.read_text())
    assert evaluated["force_mae"] == pytest.approx(metrics["val"]["force_mae"], rel=1e-5)

    predicted = tmp_path / "pred.extxyz"
    assert main(["predict", str(run / "final.pt"), str(dataset / "val.extxyz"),
                 "-o", str(predicted)]) == 0  # fmt: skip
    frames = read(predicted, ":")
    assert len(frames) == evaluated["n_structures"]
    assert frames[0].get_forces().shape == (len(frames[0]), 3)


def test_config_typo_is_reported(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  max_step: 3\n")
    assert main(["train", str(config), "--train", "x.extxyz", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'max_steps'" in capsys.readouterr().err


def test_training_without_forces_is_refused(tmp_path, capsys):
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    atoms = bulk("Cu", cubic=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
    data = tmp_path / "energies_only.extxyz"
    write(data, [atoms])
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    code = main(["train", str(config), "--train", str(data), "--out", str(tmp_path / "r"),
                 "--no-progress"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "energies_only.extxyz" in err and "forces" in err


def test_demo_runs_end_to_end(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = tmp_path / "demo"
    code = main(["demo", "--out", str(out), "--config", str(config), "--systems", "3",
                 "--max-steps", "3", "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "predict zero" in printed and "element refs" in printed
    assert "ADwT" in printed and "EwT" in printed
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    relax = metrics["relaxation"]
    assert relax["n_structures"] >= 1 and relax["n_evaluated"] == relax["n_structures"]
    assert 0.0 <= relax["is2rs"]["adwt"] <= 1.0 and relax["is2re"]["energy_mae"] >= 0.0
    relaxed = read(out / "run" / "relaxed_test.extxyz", ":")
    assert len(relaxed) == relax["n_structures"]
    assert all("converged" in a.info and "relax_steps" in a.info for a in relaxed)


@pytest.fixture(scope="module")
def finished_run(dataset, tmp_path_factory):
    """A two-step run: its config file and output directory."""
    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = root / "run"
    code = main(["train", str(config), "--train", str(dataset / "train.extxyz"), "--out", str(out),
                 "--max-steps", "2", "--no-progress"])  # fmt: skip
    assert code == 0
    return config, out


def _digests(directory) -> dict:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir()) if p.is_file()}  # fmt: skip


def test_an_existing_run_is_never_overwritten_silently(dataset, finished_run, capsys):
    config, out = finished_run
    before = _digests(out)
    train = ["train", str(config), "--train", str(dataset / "train.extxyz"), "--out", str(out),
             "--no-progress", "--max-steps", "2"]  # fmt: skip
    assert main(train) == 2
    err = capsys.readouterr().err
    assert "already holds a training run" in err and "--resume" in err and "--overwrite" in err
    assert _digests(out) == before
    # a changed model config is refused before the run's config.yaml is touched
    changed = config.parent / "changed.yaml"
    changed.write_text(TINY_YAML.replace("num_layers: 1", "num_layers: 2"))
    resume = ["train", str(changed), *train[2:], "--resume"]
    assert main(resume) == 2
    err = capsys.readouterr().err
    assert "model.num_layers=2 (checkpoint: 1)" in err and "Traceback" not in err
    assert _digests(out) == before
    assert main(train + ["--resume", "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err


def test_resume_without_a_checkpoint_says_so(dataset, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    (tmp_path / "empty").mkdir()
    code = main(["train", str(config), "--train", str(dataset / "train.extxyz"),
                 "--out", str(tmp_path / "empty"), "--resume"])  # fmt: skip
    assert code == 2
    assert "has no checkpoint.pt, so there is nothing to resume" in capsys.readouterr().err


def test_a_run_directory_in_use_is_refused(dataset, tmp_path, capsys):
    from eqv2.train.run_dir import run_lock

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = tmp_path / "busy"
    args = ["train", str(config), "--train", str(dataset / "train.extxyz"), "--out", str(out),
            "--max-steps", "1", "--no-progress"]  # fmt: skip
    with run_lock(out):  # another training holds the directory
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "in use by another training" in err and str(out) in err
    assert not (out / "log.csv").exists()
    assert main(args) == 0  # released: the directory can be used


def test_overwrite_replaces_the_whole_run(dataset, finished_run, tmp_path):
    import shutil

    config, finished = finished_run
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    (out / "parity_val.png").write_bytes(b"stale")
    (out / "best.pt").write_bytes(b"stale")
    code = main(["train", str(config), "--train", str(dataset / "train.extxyz"), "--out", str(out),
                 "--max-steps", "1", "--no-progress", "--overwrite"])  # fmt: skip
    assert code == 0
    # no validation set this time: neither a plot nor a best.pt, and the old ones are gone
    assert not (out / "parity_val.png").exists() and not (out / "best.pt").exists()
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1"]
