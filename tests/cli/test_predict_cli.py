"""``eqv2 predict``: own prediction keys, output checked first, budget batching, non-finite."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from eqv2 import save_model
from eqv2.cli.main import main
from eqv2.cli.predict import budget_batches
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    generated_systems,
    make_potential,
    one_thread,
)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Four generated structures with reference labels energy=-1.5·k, forces=k."""
    systems = generated_systems(4)
    for k, atoms in enumerate(systems):
        atoms.calc = SinglePointCalculator(
            atoms, energy=-1.5 * k, forces=np.full((len(atoms), 3), float(k))
        )
    path = tmp_path_factory.mktemp("data") / "labelled.extxyz"
    write(path, systems)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(make_potential(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _predict(checkpoint, inp, out, *extra):
    return main(["predict", str(checkpoint), str(inp), "-o", str(out), "--float64", *extra])


def test_predictions_keep_the_reference_labels(checkpoint, labelled, tmp_path):
    out = tmp_path / "pred.extxyz"
    assert _predict(checkpoint, labelled, out) == 0
    frames = read(out, ":")
    for k, atoms in enumerate(frames):
        assert atoms.get_potential_energy() == -1.5 * k  # the reference labels are kept
        assert np.all(atoms.get_forces(apply_constraint=False) == k)
        assert np.isfinite(atoms.info["eqv2_energy"]) and atoms.info["eqv2_energy"] != -1.5 * k
        assert atoms.arrays["eqv2_forces"].shape == (len(atoms), 3)
    plain = tmp_path / "plain.extxyz"
    assert _predict(checkpoint, labelled, plain, "--label-prefix", "") == 0
    for a, b in zip(frames, read(plain, ":"), strict=True):
        assert b.get_potential_energy() == pytest.approx(a.info["eqv2_energy"], abs=1e-12)
        np.testing.assert_allclose(
            b.get_forces(apply_constraint=False), a.arrays["eqv2_forces"], atol=1e-12
        )


def test_budget_batching_gives_the_same_results(checkpoint, labelled, tmp_path):
    ref, budget = tmp_path / "ref.extxyz", tmp_path / "budget.extxyz"
    assert _predict(checkpoint, labelled, ref) == 0
    assert _predict(checkpoint, labelled, budget, "--max-atoms", "30", "--max-edges", "900") == 0
    for a, b in zip(read(ref, ":"), read(budget, ":"), strict=True):
        assert b.info["eqv2_energy"] == pytest.approx(a.info["eqv2_energy"], abs=1e-10)
        np.testing.assert_allclose(b.arrays["eqv2_forces"], a.arrays["eqv2_forces"], atol=1e-10)


def test_edge_budget_builds_each_graph_once(checkpoint, labelled, tmp_path, monkeypatch):
    import eqv2.graph.batch as batch

    searched = []
    real = batch.find_pairs

    def counting(positions, *args, **kwargs):
        searched.append(len(positions))
        return real(positions, *args, **kwargs)

    monkeypatch.setattr(batch, "find_pairs", counting)
    out = tmp_path / "out.extxyz"
    assert _predict(checkpoint, labelled, out, "--max-edges", "900", "--batch-size", "2") == 0
    assert searched == [len(a) for a in read(labelled, ":")]  # one neighbour search each


def test_budget_batches():
    sizes = [10, 10, 25, 5, 5, 40]
    assert [list(r) for r in budget_batches(sizes, max_count=16)] == [list(range(6))]
    got = [list(r) for r in budget_batches(sizes, max_count=16, max_atoms=30)]
    assert got == [[0, 1], [2, 3], [4], [5]]  # an oversized structure runs alone
    got = [list(r) for r in budget_batches(sizes, max_count=2)]
    assert got == [[0, 1], [2, 3], [4, 5]]
    edges = [100, 100, 100, 500, 1, 1]
    got = [list(r) for r in budget_batches(sizes, max_count=9, edges=edges, max_edges=250)]
    assert got == [[0, 1], [2], [3], [4, 5]]
    with pytest.raises(ValueError, match="--max-atoms 0: must be at least 1"):
        list(budget_batches(sizes, max_count=2, max_atoms=0))


def test_output_is_checked_before_any_work(checkpoint, labelled, tmp_path, capsys, monkeypatch):
    import eqv2.cli.model_args as model_args

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(model_args, "load_potential", no_model)
    before = labelled.read_bytes()
    link = tmp_path / "link.extxyz"
    link.symlink_to(labelled)
    relative = os.path.relpath(labelled)
    for out, message in [
        (labelled, "is the input file"),
        (link, "is the input file"),
        (relative, "is the input file"),
        (tmp_path, "is a directory"),
        (f"{tmp_path}/sub/", "is a directory"),
        (labelled / "x.extxyz", "is a file, not a directory"),
        ("/proc/eqv2-out.extxyz", "cannot write in /proc"),
    ]:
        assert _predict(checkpoint, labelled, out) == 2, out
        assert message in capsys.readouterr().err, out
    assert labelled.read_bytes() == before


def test_non_finite_predictions_fail_naming_the_structure(labelled, tmp_path, capsys):
    potential = make_potential()
    with torch.no_grad():
        next(potential.parameters()).fill_(float("nan"))
    broken = save_model(potential, tmp_path / "nan.pt")
    out = tmp_path / "pred.extxyz"
    assert _predict(broken, labelled, out) == 1
    err = capsys.readouterr().err
    assert "Structure 0 (" in err and "the model returned energy nan" in err
    assert "4 of 4 structures have no usable prediction" in err
    frames = read(out, ":")
    assert "eqv2_energy" not in frames[0].info and "eqv2_error" in frames[0].info


def test_non_finite_outputs_fail_in_every_command(labelled, tmp_path, capsys):
    potential = make_potential()
    with torch.no_grad():
        next(potential.parameters()).fill_(float("nan"))
    broken = str(save_model(potential, tmp_path / "nan.pt"))
    relax = ["relax", broken, str(labelled), "-o", str(tmp_path / "r.extxyz"), "--quiet"]
    assert main([*relax, "--steps", "2"]) == 1
    assert "the model returned energy nan" in capsys.readouterr().out
    md = ["md", broken, str(labelled), "-o", str(tmp_path / "md.extxyz"), "--steps", "2"]
    assert main(md) == 2
    assert "MD diverged at step 0: potential energy nan" in capsys.readouterr().err
    assert main(["evaluate", broken, str(labelled)]) == 2
    assert "non-finite energies or forces" in capsys.readouterr().err
