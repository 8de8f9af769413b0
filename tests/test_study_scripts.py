"""The small-data study's scripts (benchmarks/study/): seeded splits, CPU timeline, summary."""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from tests.conftest import REPO


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, REPO / "benchmarks" / "study" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_split_indices_partition_and_seed():
    splits = _load("make_splits")
    a = splits.split_indices(50, 0.1, 0.2, seed=0)
    assert (len(a["val"]), len(a["test"]), len(a["train"])) == (5, 10, 35)
    together = sorted(a["val"] + a["test"] + a["train"])
    assert together == list(range(50))
    assert a == splits.split_indices(50, 0.1, 0.2, seed=0)
    assert a != splits.split_indices(50, 0.1, 0.2, seed=1)
    with pytest.raises(ValueError, match="at least 3"):
        splits.split_indices(2, 0.1, 0.2, seed=0)


def test_make_splits_writes_labelled_extxyz(tmp_path, monkeypatch):
    splits = _load("make_splits")
    frames = []
    for i in range(10):
        atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7 + 0.01 * i]])
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 - i, forces=np.full((2, 3), 0.1 * i))
        frames.append(atoms)
    (tmp_path / "d").mkdir()
    write(tmp_path / "d" / "h2.extxyz", frames)
    spec = splits.DatasetSpec(("h2.extxyz",), 0.2, 0.2)
    monkeypatch.setitem(splits.DATASETS, "h2", spec)
    splits.main(["h2", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "out")])
    record = json.loads((tmp_path / "out" / "indices.json").read_text())
    for name in ("train", "val", "test"):
        got = read(tmp_path / "out" / f"{name}.extxyz", ":")
        idx = [i for _, i in record["splits"][name]]
        assert [a.get_potential_energy() for a in got] == [-1.0 - i for i in idx]
        assert np.allclose(got[0].get_forces(), 0.1 * idx[0])
    with pytest.raises(SystemExit, match="not found"):
        splits.main(["h2", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")])


def test_cpu_timeline_measures_a_busy_child(tmp_path):
    timeline = _load("cpu_timeline")
    (tmp_path / "log.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    code = timeline.main(
        ["--out", str(tmp_path), "--every", "0.1", "--", sys.executable, "-c", busy]
    )
    assert code == 0
    total = json.loads((tmp_path / "cpu_total.json").read_text())
    assert 0.5 <= total["cpu_s"] < 5.0
    rows = (tmp_path / "cpu_timeline.csv").read_text().splitlines()
    assert rows[0] == "wall_s,cpu_s,step" and rows[-1].endswith(",2")
    assert timeline.last_step(tmp_path / "absent.csv") == 0


def test_summarize_reads_both_kinds_of_run(tmp_path):
    summarize = _load("summarize")
    eq = tmp_path / "eq"
    eq.mkdir()
    (eq / "log.csv").write_text(
        "step,epoch,loss,val_energy_mae,val_force_mae\n1,0,1.0,,\n2,0,0.9,0.5,0.30\n4,1,0.8,0.4,0.20\n"
    )
    (eq / "cpu_timeline.csv").write_text("wall_s,cpu_s,step\n1,10,0\n2,800,2\n3,1000,4\n")
    test = {"energy_mae": 0.4, "force_mae": 0.2}
    base = {"energy_mae": 2.0, "force_mae": 0.5}
    (eq / "metrics.json").write_text(json.dumps({"test": test, "test_baseline": base}))
    ma = tmp_path / "ma"
    ma.mkdir()
    (ma / "curve.csv").write_text("cpu_s,val_force_mae\n600,0.4\n1000,0.25\n")
    mace_metrics = {
        "train_cpu_s": 1000.0,
        "epochs": 5.0,
        "test": {"energy_mae": 0.3, "force_mae": 0.25},
        "test_baselines": {"zero_force_mae": 0.5, "mean_energy_mae": 2.0},
    }
    (ma / "metrics.json").write_text(json.dumps(mace_metrics))
    runs = [summarize.read_eqv2("d", eq), summarize.read_mace("d", ma)]
    assert runs[0].train_cpu_s == 1000.0 and runs[0].epochs == 2
    assert summarize.val_at(runs[0], 900) == pytest.approx(0.30)
    assert summarize.val_at(runs[1], 900) == pytest.approx(0.4)
    assert np.isnan(summarize.val_at(runs[1], 100))
    text = summarize.table(runs)
    row = "| d | eqv2 | 16.7 | 2.0 | 500 | 0.3000 | 0.400 | 0.2000 | 0.5000 | 0.40 | 2.00 |"
    assert row in text
    assert "| d | MACE |" in text
