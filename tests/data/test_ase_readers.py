"""ASE-readable files and ASE databases: exact round trips, real shared files, bad input."""

from __future__ import annotations

from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqv2.data import DataError, MissingFileError, Structure, read_structures, to_atoms

from ..conftest import SHARED
from .strategies import random_structure, same_physics

DATA = SHARED / "data"


def _shared(rel: str) -> Path:
    p = DATA / rel
    if not p.exists():
        pytest.skip(f"shared data not found at {p} (place ../shared beside the repo)")
    return p


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seeds=st.lists(st.integers(0, 2**31), min_size=1, max_size=4), n=st.integers(1, 9))
def test_extxyz_round_trip_is_exact(tmp_path: Path, seeds: list[int], n: int) -> None:
    # ASE writes per-atom floats with 8 decimals, so draw values that have at most 8.
    structs = [random_structure(s, n + i, decimals=8) for i, s in enumerate(seeds)]
    path = tmp_path / "rt.extxyz"
    ase.io.write(path, [to_atoms(s) for s in structs], format="extxyz")
    back = read_structures(path)
    assert len(back) == len(structs)
    for i, (a, b) in enumerate(zip(structs, back, strict=True)):
        assert same_physics(a, b)
        assert b.info["source"] == str(path) and b.info["index"] == i


def test_ase_db_round_trip_is_exact(tmp_path: Path) -> None:
    structs = [random_structure(s, 3 + s) for s in range(5)]
    structs[2].energy = None
    path = tmp_path / "rt.db"
    with ase.db.connect(path) as db:
        for s in structs:
            db.write(to_atoms(s))
    back = read_structures(path)
    for a, b in zip(structs, back, strict=True):
        assert same_physics(a, b)
    assert [b.info["id"] for b in back] == [1, 2, 3, 4, 5]
    assert read_structures(path, index="1:3")[0].info["id"] == 2


def test_ref_keys_and_custom_keys(tmp_path: Path) -> None:
    a = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]], cell=np.eye(3) * 6, pbc=False)
    a.info["REF_energy"] = -14.5
    a.info["dft_energy"] = -15.5
    a.arrays["REF_forces"] = np.array([[0.0, 0, 1.5], [0, 0, -1.5]])
    a.arrays["move_mask"] = np.array([False, True])
    path = tmp_path / "ref.extxyz"
    ase.io.write(path, a, format="extxyz")
    (s,) = read_structures(path, require=("energy", "forces"))
    assert s.energy == -14.5 and s.forces[0, 2] == 1.5
    assert s.fixed.tolist() == [True, False]
    assert read_structures(path, energy_key="dft_energy")[0].energy == -15.5
    with pytest.raises(DataError, match="field 'energy' is required"):
        read_structures(path, energy_key="missing", require=("energy",))


def test_array_info_and_custom_per_atom_arrays_become_targets(tmp_path: Path) -> None:
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    atoms.info["field"] = np.array([0.1, -0.2, 0.3])  # per-structure vector
    atoms.info["polarizability"] = np.arange(9.0).reshape(3, 3)  # per-structure 3x3
    atoms.info["charge"] = 0  # a scalar stays metadata
    atoms.info["dipole"] = np.array([1.0, 2.0, 3.0])  # ASE's reader hands it to the calculator
    atoms.arrays["hirshfeld"] = np.array([[0.1, 1.0], [0.2, 2.0], [0.3, 3.0]])  # per-atom (n, 2)
    path = tmp_path / "t.extxyz"
    ase.io.write(path, atoms)
    (s,) = read_structures(path)
    assert sorted(s.targets) == ["dipole", "field", "hirshfeld", "polarizability"]
    np.testing.assert_array_equal(s.targets["field"], [0.1, -0.2, 0.3])
    np.testing.assert_array_equal(s.targets["dipole"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(s.targets["polarizability"], np.arange(9.0).reshape(3, 3))
    np.testing.assert_array_equal(s.targets["hirshfeld"], atoms.arrays["hirshfeld"])
    assert s.info["charge"] == 0
    s.validate()


def test_real_oc20_extxyz_files() -> None:
    (s,) = read_structures(_shared("oc_samples/oc20_fairchem_test_structure.extxyz"))
    assert len(s) == 34 and s.energy == -135.66393572
    assert s.fixed.sum() == 24 and set(s.tags.tolist()) <= {0, 1, 2} and s.tags.any()
    assert s.forces.shape == (34, 3) and s.pbc.all()
    frames = read_structures(
        _shared("oc_samples/oc20_random1447590_relaxation.extxyz"), require=("energy", "forces")
    )
    assert len(frames) == 47 and all(f.fixed.sum() == 10 for f in frames)
    oxides = read_structures(_shared("oc_samples/oc22like_oxides_vasp_pbe.extxyz"), index=":3")
    assert len(oxides) == 3 and oxides[0].stress is not None
    assert np.array_equal(oxides[0].stress, oxides[0].stress.T)


def test_real_qm9_db() -> None:
    path = _shared("molecules/qm9_subset_schnetpack_19.db")
    mols = read_structures(path)
    assert len(mols) == 19 and mols[0].info["name"] == "CH4"
    assert all(m.energy is None and m.forces is None for m in mols)  # no DFT energy label
    u0 = read_structures(path, energy_key="energy_U0", require=("energy",))
    assert u0[0].energy == pytest.approx(-1101.48779008334)
    with pytest.raises(
        DataError, match=r"qm9_subset_schnetpack_19\.db, structure 0: field 'energy'"
    ):
        read_structures(path, require=("energy",))


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.extxyz: no such file"):
        read_structures(tmp_path / "nope.extxyz")
    for name in ("empty.extxyz", "empty.db"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(DataError, match=rf"{name}: file is empty"):
            read_structures(tmp_path / name)


def test_garbage_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.extxyz"
    p.write_text("3\nnot a comment line\nH 0 0\n")
    with pytest.raises(DataError, match=r"bad\.extxyz, structure 0: ASE could not read"):
        read_structures(p)
    good = tmp_path / "good.extxyz"
    ase.io.write(good, [to_atoms(random_structure(i, 2, decimals=8)) for i in range(2)])
    p.write_text(good.read_text() + "2\nLattice=broken\nH 0 0 0\n")
    with pytest.raises(DataError, match=r"bad\.extxyz, structure 2: ASE could not read"):
        read_structures(p)
    with pytest.raises(DataError, match=r"bad\.extxyz: ASE could not read"):
        read_structures(p, index=":2")  # a selection reads the whole file, which fails too


def test_forces_absent_when_required(tmp_path: Path) -> None:
    s = random_structure(0, 4, decimals=8)
    s.forces = None
    p = tmp_path / "noforces.extxyz"
    ase.io.write(p, [to_atoms(s)] * 2, format="extxyz")
    with pytest.raises(
        DataError, match=r"noforces\.extxyz, structure 0: field 'forces' is required"
    ):
        read_structures(p, require=("energy", "forces"))


def test_unknown_element_nan_label_and_bad_force_shape(tmp_path: Path) -> None:
    good = to_atoms(random_structure(1, 3, decimals=8))
    dummy = good.copy()
    dummy.numbers[1] = 0  # ASE writes Z=0 as "X"
    p = tmp_path / "x.extxyz"
    ase.io.write(p, [good, dummy], format="extxyz")
    with pytest.raises(DataError, match=r"x\.extxyz, structure 1: field 'numbers'.*Z=0"):
        read_structures(p)
    nan = good.copy()
    nan.info["REF_energy"] = float("nan")
    p = tmp_path / "nan.extxyz"
    ase.io.write(p, nan, format="extxyz")
    with pytest.raises(DataError, match=r"nan\.extxyz, structure 0: field 'energy' is nan"):
        read_structures(p, energy_key="REF_energy")
    bad = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]])
    bad.arrays["REF_forces"] = np.zeros((2, 2))
    p = tmp_path / "shape.extxyz"
    ase.io.write(p, bad, format="extxyz")
    with pytest.raises(DataError, match=r"shape\.extxyz, structure 0: field 'forces' has shape"):
        read_structures(p, forces_key="REF_forces")


def test_structure_list_is_plain_data() -> None:
    s = Structure(numbers=[1], positions=[[0.0, 0.0, 0.0]])
    assert s.tags.tolist() == [0] and s.fixed.tolist() == [False] and not s.pbc.any()
