"""``eqv2 md`` end to end: trajectory, JSON report, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.build import molecule
from ase.io import read, write

import eqv2
from eqv2.cli import main
from eqv2.model import Potential
from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)
from tests.tiny import tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny_model(max_radius=6.0, max_neighbors=50, direct_forces=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return eqv2.save_model(Potential(model), path)


@pytest.fixture
def structure(tmp_path):
    path = tmp_path / "in.extxyz"
    write(path, [molecule("H2O"), molecule("CO")])
    return path


def test_nve_round_trip(checkpoint, structure, tmp_path, capsys):
    traj = tmp_path / "traj.extxyz"
    code = main(["md", str(checkpoint), str(structure), "-o", str(traj), "--index", "1",
                 "--steps", "6", "--interval", "2", "--timestep-fs", "0.25", "--float64",
                 "--seed", "3"])  # fmt: skip
    assert code == 0
    frames = read(traj, ":")
    assert [f.info["md_step"] for f in frames] == [0, 2, 4, 6]
    assert frames[0].get_chemical_formula() == "CO"
    report = json.loads((tmp_path / "traj.json").read_text())
    assert report["steps"] == 6 and report["time_fs"] == pytest.approx(1.5)
    assert report["settings"]["model_conservative"] is True
    assert report["drift"]["max_abs_dE_eV"] < 1e-3
    out = capsys.readouterr().out
    assert "energy drift" in out and "meV/atom/ps" in out and "wrote 4 frames" in out


def test_langevin_round_trip(checkpoint, structure, tmp_path, capsys):
    traj, report = tmp_path / "traj.extxyz", tmp_path / "r.json"
    code = main(["md", str(checkpoint), str(structure), "-o", str(traj), "--ensemble",
                 "langevin", "--steps", "3", "--interval", "5", "--temperature-K", "500",
                 "--friction", "0.02", "--report", str(report)])  # fmt: skip
    assert code == 0
    assert len(read(traj, ":")) == 2  # step 0 and the last
    r = json.loads(report.read_text())
    assert r["drift"] is None and r["settings"]["friction_per_fs"] == 0.02
    assert "energy drift" not in capsys.readouterr().out


def test_bad_input_writes_nothing(checkpoint, tmp_path, capsys):
    atoms = molecule("CO")
    atoms.numbers[0] = 95  # the tiny model knows elements below 90
    bad = tmp_path / "bad.extxyz"
    write(bad, atoms)
    traj = tmp_path / "out" / "traj.extxyz"
    code = main(["md", str(checkpoint), str(bad), "-o", str(traj), "--steps", "2"])
    assert code == 2 and "Z=95" in capsys.readouterr().err
    assert not traj.exists() and not traj.with_suffix(".json").exists()
    code = main(["md", str(checkpoint), str(bad), "-o", str(traj), "--index", "3"])
    assert code == 2 and "--index 3: " in capsys.readouterr().err
    code = main(["md", str(checkpoint), str(tmp_path / "none.xyz"), "-o", str(traj)])
    assert code == 2 and "none.xyz: no such file" in capsys.readouterr().err


def _frames_in(path: Path) -> int:
    """Complete frames of a CO trajectory (4 lines each) in a file being written."""
    try:
        return len(path.read_text().splitlines()) // 4
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_keeps_every_finished_frame(sig, checkpoint, structure, tmp_path):
    traj = tmp_path / "traj.extxyz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "eqv2", "md", str(checkpoint), str(structure), "-o", str(traj),
         "--index", "1", "--steps", "100000", "--interval", "1", "--timestep-fs", "0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    seen = 0
    while seen < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        seen = max((_frames_in(p) for p in tmp_path.glob(".traj.extxyz.*")), default=0)
    assert seen >= 3, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    frames = read(traj, ":")
    assert len(frames) >= seen
    assert [f.info["md_step"] for f in frames] == list(range(len(frames)))
    report = json.loads(traj.with_suffix(".json").read_text())
    assert report["frames_written"] == len(frames) and report["steps"] == len(frames) - 1
    assert report["ended"]["reason"] == "interrupted" and report["ended"]["signal"] == sig.name
    assert f"stopped early: interrupted after step {len(frames) - 1} of 100000" in err
    assert not list(tmp_path.glob(".traj*"))  # no temporary file left


def test_diverging_run_keeps_the_frames_before(
    checkpoint, structure, tmp_path, capsys, monkeypatch
):
    import eqv2.simulate

    class NaNAfterFour(eqv2.simulate.EqV2Calculator):
        calls = 0

        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            NaNAfterFour.calls += 1
            if NaNAfterFour.calls > 4:
                self.results["energy"] = float("nan")

    monkeypatch.setattr(eqv2.simulate, "EqV2Calculator", NaNAfterFour)
    traj = tmp_path / "traj.extxyz"
    code = main(["md", str(checkpoint), str(structure), "-o", str(traj), "--steps", "10",
                 "--interval", "1"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1, err
    assert "stopped early: MD diverged at step 4: potential energy nan" in err
    report = json.loads(traj.with_suffix(".json").read_text())
    assert report["ended"]["reason"] == "diverged" and report["ended"]["last_step"] == 3
    assert [f.info["md_step"] for f in read(traj, ":")] == [0, 1, 2, 3]
    assert report["frames_written"] == 4 and report["steps"] == 3
