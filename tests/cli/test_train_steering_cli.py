"""A steered run from the command line: time budget, early stopping, bounded final scoring,
log lines instead of a bar; then ``eqv2 evaluate`` with predictions, baselines and plots."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from ase.io import read

from eqv2.cli import main
from eqv2.model.checkpoint import load_checkpoint
from tests.cli.test_train_cli import TINY_YAML, dataset  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def steered_run(dataset, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("steered")
    config = root / "tiny.yaml"
    config.write_text(TINY_YAML)
    out = root / "run"
    code = main(["train", str(config), "--train", str(dataset / "train.extxyz"),
                 "--val", str(dataset / "val.extxyz"), "--out", str(out), "--max-time", "1h",
                 "--set", "train.final_scoring={splits: [val], max_structures: 2}",
                 "--set", "train.early_stopping={patience: 5}",
                 "--set", "train.max_time_clock=process"])  # fmt: skip
    assert code == 0
    return out


def test_a_steered_run_scores_only_what_it_was_asked(dataset, steered_run):  # noqa: F811
    metrics = json.loads((steered_run / "metrics.json").read_text())
    assert set(metrics) == {"val", "val_baseline", "val_element_refs"}
    assert len(read(dataset / "val.extxyz", ":")) > 2 == metrics["val"]["n_structures"]
    extra = load_checkpoint(steered_run / "final.pt")["extra"]
    assert extra["step"] == 6 and np.isfinite(extra["train_mean_energy"])
    with open(steered_run / "log.csv", newline="") as handle:
        times = [float(row["time"]) for row in csv.DictReader(handle)]
    assert len(times) == 6 and times == sorted(times) and times[-1] < 3600
    assert "max_time: 3600.0" in (steered_run / "config.yaml").read_text()


def test_evaluate_writes_predictions_baselines_and_parity(dataset, steered_run, tmp_path):  # noqa: F811
    val = dataset / "val.extxyz"
    train_e = np.array([a.get_potential_energy() for a in read(dataset / "train.extxyz", ":")])
    out = {k: tmp_path / name for k, name in
           (("json", "m.json"), ("pred", "pred.extxyz"), ("png", "parity.png"))}  # fmt: skip
    assert main(["evaluate", str(steered_run / "final.pt"), str(val), "--out", str(out["json"]),
                 "--predictions", str(out["pred"]), "--parity", str(out["png"])]) == 0  # fmt: skip
    report = json.loads(out["json"].read_text())
    frames = read(out["pred"], ":")
    assert len(frames) == report["n_structures"] == len(read(val, ":"))
    assert [a.info["index"] for a in frames] == list(range(len(frames)))
    ref = np.array([a.get_potential_energy() for a in frames])
    pred = np.array([a.info["eqv2_energy"] for a in frames])
    assert report["energy_mae"] == pytest.approx(np.abs(pred - ref).mean(), rel=1e-6)
    force_err = np.concatenate([np.linalg.norm(a.arrays["eqv2_forces"] - a.get_forces(), axis=1)
                                for a in frames])  # fmt: skip
    assert force_err.max() > 0 and frames[0].arrays["eqv2_forces"].shape == (len(frames[0]), 3)
    # the baselines use the training run's statistics, as metrics.json does
    assert report["baseline_statistics"] == "training set"
    assert report["baseline"]["energy_mae"] == pytest.approx(
        np.abs(ref - train_e.mean()).mean(), rel=1e-9
    )
    assert report["element_refs"]["force_mae"] == report["baseline"]["force_mae"] > 0
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_without_training_statistics_uses_the_sets_own_mean(
    dataset,  # noqa: F811
    steered_run,
    tmp_path,
    capsys,
):
    val = dataset / "val.extxyz"
    out = tmp_path / "m.json"
    # checkpoint.pt carries the training state, not the final model's statistics
    assert main(["evaluate", str(steered_run / "checkpoint.pt"), str(val), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    val_e = np.array([a.get_potential_energy() for a in read(val, ":")])
    assert report["baseline_statistics"] == "evaluated set"
    assert report["baseline"]["energy_mae"] == pytest.approx(
        np.abs(val_e - val_e.mean()).mean(), rel=1e-9
    )
    printed = capsys.readouterr().out
    assert "mean energy" in printed and "evaluated set's mean energy" in printed
    assert main(["evaluate", str(steered_run / "final.pt"), str(val), "--predictions",
                 str(val)]) == 2  # fmt: skip
    assert "overwrite the input" in capsys.readouterr().err
