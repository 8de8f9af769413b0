"""QM9-like molecule generator: graphs, determinism, labels and units, failures, files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eqv2.data.generate.molecules import (
    MoleculeConfig,
    generate_molecules,
    write_molecules,
)

rdkit = pytest.importorskip("rdkit", reason="RDKit not installed (pip install 'eqv2[molecules]')")
pytest.importorskip(
    "tblite.interface", reason="tblite not installed (pip install 'eqv2[molecules]')"
)

from rdkit import Chem  # noqa: E402

from eqv2.data.generate.mol_graphs import random_smiles  # noqa: E402
from eqv2.data.generate.mol_labels import (  # noqa: E402
    MoleculeFailure,
    XtbSettings,
    label_xtb,
    molecule_record,
)

WEIGHTS = {"C": 0.66, "N": 0.15, "O": 0.16, "F": 0.03}


@pytest.fixture(scope="module")
def small() -> object:
    return generate_molecules(4, seed=3)


def _same(a, b) -> None:
    """Equal up to floating-point reduction order (tblite's OpenMP threads: torch's tests set 2)."""
    assert a.info == b.info and np.array_equal(a.numbers, b.numbers)
    assert a.positions == pytest.approx(b.positions, abs=1e-8)
    assert a.energy == pytest.approx(b.energy, rel=1e-10)
    assert a.forces == pytest.approx(b.forces, abs=1e-7)
    for k, v in a.targets.items():
        assert v == pytest.approx(b.targets[k], rel=1e-8, abs=1e-8), k


def test_graphs_are_qm9_like_and_seeded() -> None:
    rng = np.random.default_rng(0)
    drawn = [random_smiles(rng, int(n), WEIGHTS) for n in rng.integers(1, 10, size=150)]
    again = np.random.default_rng(0)
    assert drawn == [random_smiles(again, int(n), WEIGHTS) for n in again.integers(1, 10, 150)]
    valid = [s for s in drawn if s is not None]
    assert len(valid) > 120
    peroxide, hetero_f = Chem.MolFromSmarts("O~O"), Chem.MolFromSmarts("[!#6]~F")
    for smi in valid:
        mol = Chem.MolFromSmiles(smi)
        heavy = [a.GetSymbol() for a in mol.GetAtoms()]
        assert 1 <= len(heavy) <= 9 and set(heavy) <= {"C", "N", "O", "F"}
        assert Chem.GetFormalCharge(mol) == 0
        assert not mol.HasSubstructMatch(peroxide) and not mol.HasSubstructMatch(hetero_f)
        assert sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms()) == 0


def test_labels_units_against_tblite_directly() -> None:
    """Water: the wrapper's eV/meV/D equal tblite's Hartree/Bohr numbers converted by hand."""
    from tblite.interface import Calculator

    numbers = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.0, 0.1173], [0.0, 0.7572, -0.4692], [0.0, -0.7572, -0.4692]])
    labels = label_xtb(numbers, pos, XtbSettings())
    calc = Calculator("GFN2-xTB", numbers, pos / 0.52917721067)
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    eps = res.get("orbital-energies")  # Hartree; water has 8 valence electrons in GFN2
    assert labels["energy"] == pytest.approx(res.get("energy") * 27.211386024367243)
    assert labels["homo"] == pytest.approx(eps[3] * 27211.386024367243)
    assert labels["lumo"] == pytest.approx(eps[4] * 27211.386024367243)
    assert labels["gap"] == pytest.approx(labels["lumo"] - labels["homo"])
    # 1 e·Bohr = 2.541746 D
    assert labels["mu"] == pytest.approx(np.linalg.norm(res.get("dipole")) * 2.541746, rel=1e-6)
    assert labels["forces"] == pytest.approx(-res.get("gradient") * 51.42208619083232)
    assert 1.5 < labels["mu"] < 3.0  # water's dipole is ~1.85 D; GFN2 is close to that


def test_scf_failure_is_reported_not_labelled() -> None:
    numbers = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.95], [0.9, 0.0, -0.3]])
    with pytest.raises(MoleculeFailure) as info:
        label_xtb(numbers, pos, XtbSettings(max_scf_iterations=2))
    assert info.value.reason == "scf"


def test_generation_is_deterministic_and_labelled(small, tmp_path: Path) -> None:
    again = generate_molecules(4, seed=3)
    assert [m.info["smiles"] for m in small.molecules] == [
        m.info["smiles"] for m in again.molecules
    ]
    for a, b in zip(small.molecules, again.molecules, strict=True):
        _same(a, b)
    smiles = [m.info["smiles"] for m in small.molecules]
    assert len(set(smiles)) == 4
    for m in small.molecules:
        assert m.energy is not None and m.forces.shape == (len(m), 3)
        assert m.targets["gap"] > 0 and m.targets["lumo"] > m.targets["homo"]
        assert m.targets["mu"] == pytest.approx(np.linalg.norm(m.targets["dipole"]))
        assert 3 <= m.info["n_heavy"] <= 9
    other = generate_molecules(1, seed=4)
    assert other.molecules[0].info["smiles"] not in smiles[:1]


def test_workers_do_not_change_the_result(small) -> None:
    par = generate_molecules(4, seed=3, workers=2)
    for a, b in zip(small.molecules, par.molecules, strict=True):
        _same(a, b)
    assert par.failures == small.failures


def test_failures_are_counted_and_too_many_is_an_error(monkeypatch) -> None:
    import eqv2.data.generate.molecules as mod

    crashed: list[int] = []

    def flaky(smiles, k, seed, settings):
        if k % 2:
            raise MoleculeFailure("scf", "forced")
        if not crashed:  # the first even candidate: an unexpected library error
            crashed.append(k)
            raise RuntimeError("boom")
        return molecule_record(smiles, k, seed, settings)

    monkeypatch.setattr(mod, "molecule_record", flaky)
    gen = generate_molecules(3, seed=1)
    assert gen.failures.get("scf", 0) >= 2 and gen.failures["error:RuntimeError"] == 1
    ids = [m.info["mol_id"] for m in gen.molecules]
    assert all(i % 2 == 0 for i in ids) and crashed[0] not in ids
    with pytest.raises(ValueError, match=r"only \d of 5 molecules succeeded.*scf"):
        generate_molecules(5, seed=1, max_candidates=4)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_molecules=0"):
        generate_molecules(0)
    with pytest.raises(ValueError, match="allowed elements"):
        generate_molecules(1, config=MoleculeConfig(element_weights={"C": 1.0, "S": 1.0}))
    with pytest.raises(ValueError, match="min_heavy_atoms=5, max_heavy_atoms=4"):
        generate_molecules(1, config=MoleculeConfig(min_heavy_atoms=5, max_heavy_atoms=4))
    with pytest.raises(ValueError, match="workers=0"):
        generate_molecules(1, workers=0)


def test_written_files_read_back(small, tmp_path: Path) -> None:
    from eqv2.data import read_structures

    written = write_molecules(small, tmp_path, fractions=(0.5, 0.0, 0.5))
    assert set(written) == {"train", "test", "metadata"}
    meta = json.loads(written["metadata"].read_text())
    assert meta["n_molecules"] == 4 and meta["counts"] == {"train": 2, "test": 2}
    assert meta["units"]["gap"] == "meV" and "tblite" in meta["versions"]
    back = read_structures(written["train"]) + read_structures(written["test"])
    by_id = {m.info["mol_id"]: m for m in small.molecules}
    for s in back:
        ref = by_id[s.info["mol_id"]]
        assert s.energy == pytest.approx(ref.energy)
        assert s.forces == pytest.approx(ref.forces, abs=1e-7)
        assert s.info["gap"] == pytest.approx(ref.targets["gap"])
        assert s.info["smiles"] == ref.info["smiles"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_cli(tmp_path: Path, capsys) -> None:
    from eqv2.cli.main import main

    assert main(["data", "generate-molecules", "--out", str(tmp_path), "--molecules", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 molecules from" in out and "molecules/s" in out
    assert (tmp_path / "train.extxyz").exists()
    assert main(["data", "generate-molecules", "--out", str(tmp_path), "--molecules", "0"]) == 2
    assert "n_molecules=0" in capsys.readouterr().err
