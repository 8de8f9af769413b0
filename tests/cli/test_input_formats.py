"""Every command reads an OC20 LMDB and an eqv2 store as well as extxyz (eqv2's readers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from eqv2 import save_model
from eqv2.cli.main import main
from eqv2.data import from_atoms, read_structures, write_store
from tests.data.oc20_writer import oc20_fields, pickle_record, write_oc20_lmdb
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    generated_systems,
    make_potential,
    one_thread,
)

FORMATS = ("extxyz", "oc20-lmdb", "store")


@pytest.fixture(scope="module")
def structures():
    """Two generated slabs with EMT-like labels (energy, forces) as records."""
    systems = generated_systems(2)
    records = []
    for k, atoms in enumerate(systems):
        atoms.calc = SinglePointCalculator(
            atoms, energy=-2.0 * k, forces=np.full((len(atoms), 3), 0.1 * k)
        )
        records.append(from_atoms(atoms, source="generated", index=k))
    return systems, records


@pytest.fixture(scope="module")
def files(structures, tmp_path_factory):
    """The same structures as extxyz, an OC20 LMDB file and an eqv2 store."""
    systems, records = structures
    root = tmp_path_factory.mktemp("formats")
    write(root / "in.extxyz", systems)
    write_oc20_lmdb(root / "in.lmdb", [pickle_record(oc20_fields(s), layout=2) for s in records])
    write_store(records, root / "store.lmdb")
    return {
        "extxyz": root / "in.extxyz",
        "oc20-lmdb": root / "in.lmdb",
        "store": root / "store.lmdb",
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(make_potential(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def predicted(files, checkpoint, tmp_path_factory):
    """``eqv2 predict`` of each input format."""
    out = {}
    for fmt, path in files.items():
        out[fmt] = tmp_path_factory.mktemp("pred") / "pred.extxyz"
        argv = ["predict", str(checkpoint), str(path), "-o", str(out[fmt]), "--float64"]
        assert main(argv) == 0, fmt
    return {fmt: read(path, ":") for fmt, path in out.items()}


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_predict(fmt, predicted):
    for a, b in zip(predicted["extxyz"], predicted[fmt], strict=True):
        # OC20 LMDBs hold float32 positions: predictions agree to that precision
        assert b.info["eqv2_energy"] == pytest.approx(a.info["eqv2_energy"], abs=1e-4)
        assert b.get_potential_energy() == a.get_potential_energy()  # labels kept


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_relax(fmt, files, checkpoint, tmp_path):
    out = tmp_path / "relaxed.extxyz"
    argv = ["relax", str(checkpoint), str(files[fmt]), "-o", str(out), "--steps", "2", "--quiet"]
    assert main(argv) == 0
    frames = read(out, ":")
    # every structure ran its 2 steps, or converged before (the generated data decides which)
    assert len(frames) == 2
    assert all(f.info["relax_steps"] == 2 or f.info["converged"] for f in frames)
    assert any(f.info["relax_steps"] == 2 for f in frames)


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_md(fmt, files, checkpoint, tmp_path):
    out = tmp_path / "md.extxyz"
    argv = ["md", str(checkpoint), str(files[fmt]), "-o", str(out), "--steps", "2",
            "--interval", "1", "--index", "1"]  # fmt: skip
    assert main(argv) == 0
    assert len(read(out, ":")) == 3


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_evaluate_relax(fmt, files, checkpoint, tmp_path, capsys):
    # the relaxed "reference" is the input itself: scored with energy and distance metrics
    metrics = tmp_path / "m.json"
    argv = ["evaluate-relax", str(checkpoint), str(files[fmt]), "--reference", str(files[fmt]),
            "--steps", "2", "--no-progress", "--out", str(metrics)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(metrics.read_text())
    assert result["n_structures"] == 2
    predicted = tmp_path / "relaxed.extxyz"
    relax = ["relax", str(checkpoint), str(files[fmt]), "-o", str(predicted), "--steps", "2"]
    assert main([*relax, "--quiet"]) == 0
    argv = ["evaluate-relax", "--predicted", str(predicted), str(files[fmt])]
    assert main(argv) == 0, capsys.readouterr().err


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_adsorbml_slab(fmt, files, checkpoint, tmp_path, capsys):
    argv = ["adsorbml", str(checkpoint), "--slab", str(files[fmt]), "--slab-index", "5",
            "--adsorbate", "*OH", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2  # read: the file's two structures are counted
    assert f"--slab-index 5: {files[fmt]} holds 2 structures" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_evaluate(fmt, files, checkpoint, tmp_path):
    out = tmp_path / "m.json"
    assert main(["evaluate", str(checkpoint), str(files[fmt]), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n_structures"] == 2


def test_one_structure_is_decoded_alone(structures, checkpoint, tmp_path, capsys):
    """``md --index`` and ``adsorbml --slab-index`` decode only the structure they use: a
    truncated record elsewhere in the LMDB does not stop them, and reading it names it."""
    _, records = structures
    good = pickle_record(oc20_fields(records[0]), layout=2)
    bad = pickle_record(oc20_fields(records[1]), layout=2)
    path = write_oc20_lmdb(tmp_path / "cut.lmdb", [good, bad[: len(bad) // 2]])
    out = tmp_path / "md.extxyz"
    argv = ["md", str(checkpoint), str(path), "-o", str(out), "--steps", "1", "--interval", "1"]
    with pytest.warns(UserWarning, match="1 record"):  # the index notes the bad record
        assert main([*argv, "--index", "0"]) == 0
    assert len(read(out, ":")) == 2
    assert main([*argv, "--index", "1", "--report", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert f"{path}, structure 1" in err and "truncated" in err


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_evaluate_relax_reads_is2re_targets(fmt, structures, checkpoint, tmp_path, capsys):
    """An OC20 IS2RE/IS2RS LMDB (``pos_relaxed``, ``y_relaxed``), and a store converted from
    it, are scored without ``--reference``: the targets travel with the records."""
    _, records = structures
    fields = []
    for k, s in enumerate(records):
        f = oc20_fields(s)
        f["pos_relaxed"] = f["pos"] + 0.1 * (k + 1)  # every atom 0.17 Å (k=0) / 0.35 Å away
        f["y_relaxed"] = -3.0 - k
        fields.append(f)
    path = write_oc20_lmdb(tmp_path / "is2re.lmdb", [pickle_record(f, layout=2) for f in fields])
    if fmt == "store":
        path = write_store(read_structures(path), tmp_path / "is2re_store.lmdb")
    metrics = tmp_path / "m.json"
    argv = ["evaluate-relax", str(checkpoint), str(path), "--steps", "0", "--no-progress",
            "--all-atoms", "--out", str(metrics)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(metrics.read_text())
    assert result["n_structures"] == 2
    # zero steps: the "relaxed" structures are the initial ones, np.sqrt(3) * 0.1 (k + 1) away
    want = np.mean([np.sqrt(3) * 0.1, np.sqrt(3) * 0.2])
    assert result["is2rs"]["mean_distance"] == pytest.approx(want, rel=1e-5)
