"""``eqv2 md --engine torchsim``: the same outputs as the ASE engine, NPT, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.constraints import FixAtoms
from ase.io import read, write

import eqv2
from eqv2.cli import main
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from tests.simulate.relax.tiny_relax import RELAX_MODEL, one_thread  # noqa: F401 (autouse)
from tests.simulate.torchsim.conftest import SKIP_REASON

pytest.importorskip("torch_sim", reason=SKIP_REASON)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return eqv2.save_model(Potential(EquiformerV2(EquiformerV2Config(**RELAX_MODEL))), path)


def _md(checkpoint, structure, out, *extra):
    return main(["md", str(checkpoint), str(structure), "-o", str(out), "--steps", "4",
                 "--interval", "2", "--timestep-fs", "0.5", "--float64", "--seed", "5",
                 *extra])  # fmt: skip


def test_torchsim_engine_writes_what_the_ase_engine_writes(checkpoint, tmp_path, capsys):
    structure = tmp_path / "in.extxyz"
    write(structure, molecule("CH3OH"))
    for engine in ("ase", "torchsim"):
        assert _md(checkpoint, structure, tmp_path / f"{engine}.extxyz", "--engine", engine) == 0
    ours, ase = read(tmp_path / "torchsim.extxyz", ":"), read(tmp_path / "ase.extxyz", ":")
    assert [f.info["md_step"] for f in ours] == [f.info["md_step"] for f in ase] == [0, 2, 4]
    for a, b in zip(ours, ase, strict=True):
        assert a.info["total_energy"] == pytest.approx(b.info["total_energy"], abs=1e-10)
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-10)
    r_ts = json.loads((tmp_path / "torchsim.json").read_text())
    r_ase = json.loads((tmp_path / "ase.json").read_text())
    assert set(r_ts) == set(r_ase) and r_ts["settings"]["engine"] == "torchsim"
    assert r_ts["drift"]["max_abs_dE_eV"] == pytest.approx(r_ase["drift"]["max_abs_dE_eV"])
    assert "wrote 3 frames" in capsys.readouterr().out


def test_npt_through_torchsim(checkpoint, tmp_path):
    structure = tmp_path / "cu.extxyz"
    write(structure, bulk("Cu", "fcc", a=3.6, cubic=True))
    out = tmp_path / "npt.extxyz"
    code = _md(checkpoint, structure, out, "--engine", "torchsim", "--ensemble", "npt",
               "--pressure-GPa", "1.5")  # fmt: skip
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["settings"]["pressure_GPa"] == 1.5 and report["drift"] is None
    volumes = [f.get_volume() for f in read(out, ":")]
    assert volumes[-1] != pytest.approx(volumes[0])  # the barostat moved the cell


def test_refusals_exit_2_and_write_nothing(checkpoint, tmp_path, capsys):
    fixed = molecule("CO")
    fixed.set_constraint(FixAtoms(indices=[0]))
    path = tmp_path / "fixed.extxyz"
    write(path, fixed)
    out = tmp_path / "t.extxyz"
    assert _md(checkpoint, path, out, "--ensemble", "npt") == 2
    assert "--ensemble npt needs --engine torchsim" in capsys.readouterr().err
    assert _md(checkpoint, path, out, "--engine", "torchsim") == 2
    assert "fixed atoms (FixAtoms)" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".json").exists()
