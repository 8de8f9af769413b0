"""``eqv2 md --indices SEL --engine torchsim``: many structures in one torch-sim batch.

Per-structure energies equal single-structure runs (16 systems), the selection syntax, one
trajectory per structure and one report, early stops keeping every frame, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.io import read, write

import eqv2
from eqv2.cli import main
from eqv2.cli.md_batch import parse_indices, trajectory_path
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from tests.simulate.relax.tiny_relax import RELAX_MODEL, one_thread  # noqa: F401 (autouse)
from tests.simulate.torchsim.conftest import SKIP_REASON, small_cells


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return eqv2.save_model(Potential(EquiformerV2(EquiformerV2Config(**RELAX_MODEL))), path)


@pytest.fixture(scope="module")
def cells16(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "cells.extxyz"
    write(path, small_cells(16))
    return path


def _md(checkpoint, structures, out, *extra):
    return main(["md", str(checkpoint), str(structures), "-o", str(out), "--steps", "4",
                 "--interval", "2", "--float64", "--seed", "5", "--engine", "torchsim",
                 *extra])  # fmt: skip


def test_parse_indices():
    assert parse_indices(":", 4) == [0, 1, 2, 3]
    assert parse_indices("0:8:3,-1", 10) == [0, 3, 6, 9]
    assert parse_indices(" 2 , 0 ", 3) == [2, 0]
    for spec, message in [
        ("4", "out of range; INPUT holds 4 structures (0...3)"),
        ("-5", "out of range"),
        ("0,a", "cannot read 'a'"),
        ("1:2:3:4", "cannot read"),
        ("::0", "cannot read"),
        ("0:2,1", "chooses structure(s) [1] more than once"),
        ("3:1", "selects no structure"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):  # fmt: skip
            parse_indices(spec, 4)


def test_trajectory_path():
    assert trajectory_path("runs/traj.extxyz", 7).as_posix() == "runs/traj.7.extxyz"
    assert trajectory_path("traj", 0).as_posix() == "traj.0"


def test_batch_of_16_equals_single_structure_runs(checkpoint, cells16, tmp_path, capsys):
    pytest.importorskip("torch_sim", reason=SKIP_REASON)
    out = tmp_path / "batch.extxyz"
    assert _md(checkpoint, cells16, out, "--indices", ":") == 0
    printed = capsys.readouterr().out
    assert "nve MD of 16 structures through torch-sim" in printed and "[15] Cl" in printed
    report = json.loads((tmp_path / "batch.json").read_text())
    assert report["ended"] == {"completed": 16} and report["settings"]["indices"] == list(range(16))
    rows = report["structures"]
    assert [r["index"] for r in rows] == list(range(16))
    assert all(r["settings"]["structures_in_batch"] == 16 for r in rows)
    assert [r["settings"]["seed"] for r in rows] == [5 + i for i in range(16)]
    for k in (0, 11):  # structure k alone: --index k --seed 5 + k, torch-sim and ASE engines
        for engine in ("torchsim", "ase"):
            alone = tmp_path / f"{engine}{k}.extxyz"
            code = _md(checkpoint, cells16, alone, "--index", str(k), "--seed", str(5 + k),
                       "--engine", engine)  # fmt: skip
            assert code == 0
            batched, single = read(trajectory_path(out, k), ":"), read(alone, ":")
            assert [f.info["md_step"] for f in batched] == [0, 2, 4]
            for a, b in zip(batched, single, strict=True):
                assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(),
                                                                 abs=1e-10)  # fmt: skip
                assert a.info["total_energy"] == pytest.approx(b.info["total_energy"], abs=1e-10)
                # torch-sim wraps periodic positions into the cell each step, ASE does not
                frac = np.linalg.solve(a.cell.array.T, (a.positions - b.positions).T).T
                np.testing.assert_allclose(frac - np.round(frac), 0.0, atol=1e-10)
            one = json.loads(alone.with_suffix(".json").read_text())
            assert rows[k]["drift"]["max_abs_dE_eV"] == pytest.approx(
                one["drift"]["max_abs_dE_eV"], abs=1e-10
            )
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_selection_writes_only_the_chosen_structures(checkpoint, cells16, tmp_path):
    pytest.importorskip("torch_sim", reason=SKIP_REASON)
    out = tmp_path / "sel.extxyz"
    report_path = tmp_path / "r.json"
    code = _md(checkpoint, cells16, out, "--indices", "3,-1", "--report", str(report_path))
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("sel.*")) == ["sel.15.extxyz", "sel.3.extxyz"]
    report = json.loads(report_path.read_text())
    assert [r["index"] for r in report["structures"]] == [3, 15]
    assert [r["frames_written"] for r in report["structures"]] == [3, 3]
    assert report["structures"][0]["settings"]["formula"] == "ClNa"
    # structure 15, second in this batch, starts as --index 15 --seed 5 + 15 does
    assert _md(checkpoint, cells16, tmp_path / "one.extxyz", "--index", "15", "--seed", "20") == 0
    for a, b in zip(read(trajectory_path(out, 15), ":"), read(tmp_path / "one.extxyz", ":"),
                    strict=True):  # fmt: skip
        assert a.info["total_energy"] == pytest.approx(b.info["total_energy"], abs=1e-12)


def _failing_model(monkeypatch, after: int, failure: str):
    """Make the torch-sim wrapper fail after ``after`` calls: NaN energy or Ctrl-C."""
    import eqv2.simulate.torchsim as ts_module

    class Failing(ts_module.EqV2TorchSimModel):
        calls = 0

        def forward(self, state, **kwargs):
            out = super().forward(state, **kwargs)
            Failing.calls += 1
            if Failing.calls > after:
                if failure == "interrupt":
                    raise KeyboardInterrupt
                out["energy"] = out["energy"].clone()
                out["energy"][1] = float("nan")
            return out

    monkeypatch.setattr(ts_module, "EqV2TorchSimModel", Failing)


@pytest.mark.parametrize(("failure", "code", "reason"),
                         [("nan", 1, "diverged"), ("interrupt", 130, "interrupted")])  # fmt: skip
def test_early_stop_keeps_every_frame(
    checkpoint, cells16, tmp_path, capsys, monkeypatch, failure, code, reason
):
    pytest.importorskip("torch_sim", reason=SKIP_REASON)
    _failing_model(monkeypatch, 3, failure)
    out = tmp_path / "t.extxyz"
    assert _md(checkpoint, cells16, out, "--indices", "0:2", "--interval", "1") == code
    assert f"stopped early: 2 {reason}" in capsys.readouterr().err
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["ended"][reason] == 2
    for row, k in zip(report["structures"], (0, 1), strict=True):
        frames = read(trajectory_path(out, k), ":")
        assert row["ended"]["reason"] == reason
        assert row["frames_written"] == len(frames) == row["ended"]["last_step"] + 1 >= 2
    if failure == "nan":
        assert "structure 1: MD diverged" in report["structures"][0]["ended"]["message"]
    else:
        assert report["ended"]["signal"] == "SIGINT"
    assert not list(tmp_path.glob(".*"))


def test_refusals_exit_2_and_write_nothing(checkpoint, cells16, tmp_path, capsys):
    out = tmp_path / "t.extxyz"
    assert _md(checkpoint, cells16, out, "--indices", ":", "--engine", "ase") == 2
    assert "--indices runs several structures as one torch-sim batch" in capsys.readouterr().err
    assert _md(checkpoint, cells16, out, "--indices", "0,16") == 2
    assert "index 16 is out of range; INPUT holds 16" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --index and --indices exclude each other
        _md(checkpoint, cells16, out, "--indices", ":", "--index", "1")
    assert "not allowed with argument" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
