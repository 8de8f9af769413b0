"""``eqv2 evaluate-relax`` end to end on generated IS2RE files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

import eqv2
from eqv2.cli import main
from eqv2.data.generate import generate_dataset
from eqv2.model import Potential
from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)
from tests.tiny import tiny_model


@pytest.fixture(scope="module")
def is2re_file(tmp_path_factory):
    """Three generated systems in the generator's IS2RE layout (initial, relaxed per system)."""
    ds = generate_dataset(3, seed=5, relax_steps=3, rattle_frames=0)
    path = tmp_path_factory.mktemp("data") / "is2re.extxyz"
    write(path, [a for system in ds.systems for a in (system.initial, system.relaxed)])
    return path


def _relax_output(is2re_file, tmp_path, with_relaxed_frames: bool):
    """What ``eqv2 relax`` writes: relaxed structures with energy, info kept, converged flags."""
    frames = read(is2re_file, ":")
    out = []
    for k, frame in enumerate(frames):
        if frame.info["kind"] == "relaxed" and not with_relaxed_frames:
            continue
        relaxed = frames[k + 1] if frame.info["kind"] == "initial" else frame
        atoms = frame.copy()
        atoms.positions = relaxed.positions.copy()
        atoms.positions[-1] += [0.0, 0.0, 0.05]  # the last adsorbate atom is off by 0.05 Å
        atoms.info.update(converged=True, relax_steps=7)
        atoms.calc = SinglePointCalculator(atoms, energy=relaxed.get_potential_energy() + 0.01)
        out.append(atoms)
    failed = out[2 if with_relaxed_frames else 1]  # the relaxation of system 1 failed
    failed.calc = None
    failed.info.update(converged=False, relax_error="Structure 1 (x): NaN forces")
    path = tmp_path / "relaxed.extxyz"
    write(path, out)
    return path


@pytest.mark.parametrize("with_relaxed_frames", [False, True])
def test_predicted_mode(is2re_file, tmp_path, capsys, with_relaxed_frames):
    predicted = _relax_output(is2re_file, tmp_path, with_relaxed_frames)
    out = tmp_path / "metrics.json"
    code = main(["evaluate-relax", "--predicted", str(predicted), str(is2re_file),
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    m = json.loads(out.read_text())
    assert m["n_structures"] == 3 and m["n_evaluated"] == 2 and m["n_converged"] == 2
    assert m["is2re"]["energy_mae"] == pytest.approx(0.01)
    assert m["is2re"]["energy_ewt"] == 1.0
    free = [np.count_nonzero(~eqv2.graph.fixed_mask(a)) for a in read(is2re_file, "1::2")]
    want = [0.05 / free[0], 0.05 / free[2]]
    got = [r.get("mean_distance") for r in m["structures"]]
    assert got[0] == pytest.approx(want[0]) and got[2] == pytest.approx(want[1]) and got[1] is None
    assert m["is2rs"]["adwt"] == 1.0 and m["failures"][0]["index"] == 1
    assert m["settings"]["mode"] == "predicted"
    printed = capsys.readouterr().out
    assert "ADwT" in printed and "NaN forces" in printed


def test_bad_input_leaves_no_output(is2re_file, tmp_path, capsys):
    frames = read(is2re_file, ":")
    predicted = tmp_path / "two.extxyz"
    write(predicted, frames[1:4:2])  # two structures for three systems
    out = tmp_path / "metrics.json"
    code = main(["evaluate-relax", "--predicted", str(predicted), str(is2re_file),
                 "--out", str(out)])  # fmt: skip
    assert code == 2 and not out.exists()
    assert "2 structures to compare but 3 reference" in capsys.readouterr().err
    code = main(["evaluate-relax", "--predicted", str(predicted), "a", "b"])
    assert code == 2 and "only positional argument" in capsys.readouterr().err
    code = main(["evaluate-relax", "ckpt.pt"])
    assert code == 2 and "expected CHECKPOINT DATA" in capsys.readouterr().err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = tiny_model(max_radius=4.5, max_neighbors=12)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return eqv2.save_model(Potential(model), path)


def test_relax_mode(is2re_file, checkpoint, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    code = main(["evaluate-relax", str(checkpoint), str(is2re_file), "--steps", "3",
                 "--fmax", "0.05", "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0
    m = json.loads(out.read_text())
    assert m["n_structures"] == m["n_evaluated"] == 3 and not m["failures"]
    assert 0.0 <= m["is2rs"]["adwt"] <= 1.0 and m["is2re"]["energy_mae"] > 0
    assert m["settings"]["mode"] == "relax" and m["settings"]["steps"] == 3
    assert all(r["steps"] <= 3 for r in m["structures"])

    # the same as a plain pair of files: initial structures, then --reference relaxed ones
    frames = read(is2re_file, ":")
    initial, relaxed = tmp_path / "initial.extxyz", tmp_path / "relaxed.extxyz"
    write(initial, [f for f in frames if f.info["kind"] == "initial"])
    write(relaxed, [f for f in frames if f.info["kind"] == "relaxed"])
    out2 = tmp_path / "metrics2.json"
    code = main(["evaluate-relax", str(checkpoint), str(initial), "--reference", str(relaxed),
                 "--steps", "3", "--no-progress", "--out", str(out2)])  # fmt: skip
    assert code == 0
    m2 = json.loads(out2.read_text())
    assert m2["is2re"] == m["is2re"] and m2["is2rs"] == m["is2rs"]
    code = main(["evaluate-relax", str(checkpoint), str(relaxed), "--steps", "3"])
    assert code == 2 and "holds no initial structures" in capsys.readouterr().err

    # eqv2 relax on the whole IS2RE file, then scored: the same numbers
    relax_out = tmp_path / "relax_out.extxyz"
    code = main(["relax", str(checkpoint), str(is2re_file), "-o", str(relax_out), "--steps", "3",
                 "--quiet"])  # fmt: skip
    assert code == 0
    out3 = tmp_path / "metrics3.json"
    code = main(["evaluate-relax", "--predicted", str(relax_out), str(is2re_file),
                 "--out", str(out3)])  # fmt: skip
    assert code == 0
    m3 = json.loads(out3.read_text())
    for task, key in [("is2re", "energy_mae"), ("is2rs", "adwt"), ("is2rs", "mean_distance")]:
        assert m3[task][key] == pytest.approx(m[task][key], rel=1e-4, abs=1e-5)
    assert m3["n_converged"] == m["n_converged"]
