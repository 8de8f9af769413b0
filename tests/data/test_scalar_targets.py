"""Named scalar targets read from records: where they are found, unit scale, missing labels."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.io import write

from eqv2.data import DataError, open_dataset
from eqv2.data.targets import read_scalar_target


def test_targets_are_found_in_info_targets_and_energy(tmp_path):
    atoms = molecule("H2O")
    atoms.info.update(gap=0.25, dipole=np.array([0.0, 0.0, 1.8]), mu=1.8)
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=-14.2)
    path = tmp_path / "mol.extxyz"
    write(path, [atoms])
    s = open_dataset(path)[0]
    assert read_scalar_target(s, "gap") == 0.25
    assert read_scalar_target(s, "gap", scale=1000.0) == pytest.approx(250.0)  # eV -> meV
    assert read_scalar_target(s, "mu") == 1.8
    assert read_scalar_target(s, "energy") == -14.2
    with pytest.raises(DataError, match="expected one finite number"):
        read_scalar_target(s, "dipole")


def test_ase_db_key_value_pairs_and_data(tmp_path):
    from ase.db import connect

    path = tmp_path / "mols.db"
    with connect(path) as db:
        db.write(molecule("CH4"), key_value_pairs={"homo": -0.39}, data={"lumo": 0.12})
    s = open_dataset(path)[0]
    assert read_scalar_target(s, "homo") == -0.39
    assert read_scalar_target(s, "lumo") == 0.12


def test_a_missing_target_names_the_record_the_key_and_the_fix(tmp_path):
    frames = [bulk("Cu") for _ in range(3)]
    for k, a in enumerate(frames):
        if k != 1:
            a.info["gap"] = 0.1 * k
    path = tmp_path / "set.extxyz"
    write(path, frames)
    data = open_dataset(path)
    assert read_scalar_target(data[2], "gap") == pytest.approx(0.2)
    with pytest.raises(DataError) as err:
        read_scalar_target(data[1], "gap", name="band_gap")
    message = str(err.value)
    assert "set.extxyz" in message and "1" in message
    assert "'band_gap' (key 'gap')" in message and "Fix:" in message
