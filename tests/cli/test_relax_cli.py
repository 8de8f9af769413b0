"""``eqv2 relax``: round trip, kept info, failures reported, atomic output, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.io import read, write

from eqv2 import load_model, save_model
from eqv2.cli.main import main
from eqv2.simulate import relax_structures
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    generated_systems,
    make_potential,
    one_thread,
)


@pytest.fixture(scope="module")
def inputs():
    systems = generated_systems(3)
    for k, atoms in enumerate(systems):
        atoms.info["name"] = f"sys{k}"
    return systems


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(make_potential(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _relax(checkpoint, inp, out, *extra):
    argv = ["relax", str(checkpoint), str(inp), "-o", str(out), "--quiet", "--dtype", "float64"]
    return main([*argv, "--steps", "4", *extra])


def test_round_trip_keeps_order_info_and_matches_the_api(checkpoint, inputs, tmp_path, capsys):
    inp, out, trajs = tmp_path / "in.extxyz", tmp_path / "out" / "relaxed.extxyz", tmp_path / "t"
    write(inp, inputs)
    assert _relax(checkpoint, inp, out, "--fix-tags", "0", "--trajectory-dir", str(trajs)) == 0
    relaxed = read(out, ":")
    assert [a.info["name"] for a in relaxed] == ["sys0", "sys1", "sys2"]
    potential = load_model(checkpoint, dtype=torch.float64)
    expected = relax_structures(potential, read(inp, ":"), steps=4, fix_tags=(0,))
    for atoms, original, result in zip(relaxed, inputs, expected, strict=True):
        assert atoms.info["system_id"] == original.info["system_id"]  # input info kept
        assert atoms.info["converged"] == result.converged
        assert atoms.info["relax_steps"] == result.steps
        assert atoms.get_potential_energy() == pytest.approx(result.energy, abs=1e-6)
        np.testing.assert_allclose(atoms.calc.results["forces"], result.forces, atol=1e-6)
        np.testing.assert_allclose(atoms.positions, result.atoms.positions, atol=1e-6)
        assert "relax_error" not in atoms.info
    assert sorted(p.name for p in trajs.iterdir()) == [f"relax_0000{k}.extxyz" for k in range(3)]
    assert [p.name for p in out.parent.iterdir()] == ["relaxed.extxyz"]  # no temporaries
    summary = capsys.readouterr().out
    assert "relaxed 3 structures" in summary and "0 failed" in summary


def test_failed_structures_are_written_and_reported(checkpoint, inputs, tmp_path, capsys):
    bad = inputs[1].copy()
    bad.numbers[-1] = 100
    inp, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write(inp, [inputs[0], bad, inputs[2]])
    assert _relax(checkpoint, inp, out) == 1  # some structure failed
    relaxed = read(out, ":")
    assert len(relaxed) == 3 and "Z=100" in relaxed[1].info["relax_error"]
    assert relaxed[1].calc is None and relaxed[1].info["converged"] is False
    np.testing.assert_allclose(relaxed[1].positions, bad.positions, atol=1e-7)
    assert relaxed[0].calc is not None and relaxed[2].calc is not None
    captured = capsys.readouterr()
    assert "1 failed" in captured.out and "Structure 1 ('sys1'," in captured.out
    assert "1 of 3 structures failed (input indices 1)" in captured.err

    write(inp, [bad])
    assert _relax(checkpoint, inp, out) == 1  # every structure failed
    assert "relax_error" in read(out, ":")[0].info


def test_unreadable_input_writes_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "out.extxyz"
    out.write_text("previous result\n")
    garbage = tmp_path / "in.extxyz"
    garbage.write_text("3\nnot an extxyz header\nX 0 0\n")
    assert _relax(checkpoint, garbage, out) == 2
    err = capsys.readouterr().err  # the streaming reader names the record and the problem
    assert "in.extxyz, structure 0:" in err and "truncated" in err
    assert _relax(checkpoint, tmp_path / "missing.extxyz", out) == 2
    assert "missing.extxyz" in capsys.readouterr().err
    assert out.read_text() == "previous result\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.extxyz", "out.extxyz"]


def test_cell_relaxation_keeps_cells_and_stress(checkpoint, tmp_path, capsys):
    from ase.units import GPa

    from eqv2.simulate import CellFilter
    from tests.simulate.relax.tiny_relax import strained_bulk

    crystals = strained_bulk()[:3]
    inp, out = tmp_path / "bulk.extxyz", tmp_path / "relaxed.extxyz"
    write(inp, crystals)
    assert _relax(checkpoint, inp, out, "--cell", "--pressure", "0.5", "--optimizer", "fire") == 0
    relaxed = read(out, ":")
    potential = load_model(checkpoint, dtype=torch.float64)
    expected = relax_structures(
        potential, read(inp, ":"), optimizer="fire", steps=4, cell=CellFilter(pressure=0.5 * GPa)
    )
    for atoms, original, result in zip(relaxed, crystals, expected, strict=True):
        assert atoms.info["name"] == original.info["name"]
        np.testing.assert_allclose(atoms.cell.array, result.atoms.cell.array, atol=1e-6)
        assert np.abs(atoms.cell.array - original.cell.array).max() > 1e-4  # the cell moved
        np.testing.assert_allclose(atoms.get_stress(voigt=False), result.stress, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pressure", "1"], "--pressure only apply to a cell relaxation; add --cell"),
        (["--hydrostatic"], "--hydrostatic only apply"),
        (["--cell", "--hydrostatic", "--constant-volume"], "nothing to relax"),
    ],
)
def test_cell_options_without_a_cell_relaxation_are_refused(
    checkpoint, inputs, tmp_path, capsys, extra, message
):
    inp, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write(inp, inputs[:1])
    assert _relax(checkpoint, inp, out, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_non_periodic_structures_fail_a_cell_relaxation(checkpoint, inputs, tmp_path, capsys):
    inp, out = tmp_path / "in.extxyz", tmp_path / "out.extxyz"
    write(inp, inputs[:1])  # a slab: pbc (T, T, F)
    assert _relax(checkpoint, inp, out, "--cell") == 1
    assert "not periodic along axis z" in read(out, ":")[0].info["relax_error"]


def test_output_that_is_the_input_is_refused(checkpoint, inputs, tmp_path, capsys):
    inp = tmp_path / "in.extxyz"
    write(inp, inputs)
    before = inp.read_bytes()
    link = tmp_path / "link.extxyz"
    link.symlink_to(inp)
    for out in (inp, link, tmp_path / "sub" / ".." / "in.extxyz"):
        assert _relax(checkpoint, inp, out) == 2
        assert "is the input file" in capsys.readouterr().err
    assert inp.read_bytes() == before
