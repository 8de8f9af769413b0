"""Structure: normalisation, validation messages and the exact round trip through ase.Atoms."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import given, settings

from eqv2.data import DataError, Structure, from_atoms, to_atoms

from .strategies import random_structure, structures


@settings(max_examples=40, deadline=None)
@given(structures)
def test_atoms_round_trip_is_exact(s: Structure) -> None:
    back = from_atoms(to_atoms(s))
    assert back.equals(s)


def test_asymmetric_stress_round_trips() -> None:
    s = random_structure(3, 4, symmetric_stress=False)
    s.stress = np.arange(9.0).reshape(3, 3)
    assert from_atoms(to_atoms(s)).equals(s)


def test_voigt_stress_expands_with_ase_order() -> None:
    s = Structure(numbers=[1], positions=[[0, 0, 0]], stress=[1, 2, 3, 4, 5, 6])
    # ASE Voigt order: xx yy zz yz xz xy
    assert np.array_equal(s.stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])


def test_to_atoms_uses_ase_conventions() -> None:
    s = random_structure(1, 5)
    s.fixed[:] = [True, False, True, False, False]
    a = to_atoms(s)
    assert a.get_potential_energy() == s.energy
    assert np.array_equal(a.get_forces(apply_constraint=False), s.forces)
    assert a.constraints[0].get_indices().tolist() == [0, 2]
    assert np.array_equal(a.get_tags(), s.tags)


def test_label_lookup_order_and_aliases() -> None:
    a = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.ones((2, 3)))
    a.info["REF_energy"] = -2.0
    # The default key finds the calculator's energy first; REF_energy only as a fallback.
    assert from_atoms(a).energy == -1.0
    assert from_atoms(a, energy_key="REF_energy").energy == -2.0
    a.calc = None
    assert from_atoms(a).energy == -2.0
    # An explicit key never falls back to another quantity.
    assert from_atoms(a, energy_key="dft_energy").energy is None
    a.info["energy"] = -3.0  # info beats the calculator for the same key
    a.calc = SinglePointCalculator(a, energy=-1.0)
    assert from_atoms(a).energy == -3.0
    a.arrays["REF_forces"] = np.full((2, 3), 2.0)
    a.calc = None
    assert np.all(from_atoms(a).forces == 2.0)


def test_move_mask_gives_fixed_atoms() -> None:
    a = Atoms("H3", positions=np.eye(3))
    a.arrays["move_mask"] = np.array([True, False, True])
    assert from_atoms(a).fixed.tolist() == [False, True, False]


@pytest.mark.parametrize("z", [0, -1, 119])
def test_unknown_element_is_named(z: int) -> None:
    s = Structure(numbers=[1, z], positions=np.zeros((2, 3)), info={"source": "f.xyz", "index": 7})
    with pytest.raises(DataError, match=rf"f\.xyz, structure 7: field 'numbers'.*Z={z}"):
        s.validate()


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("positions", np.array([[0, 0, np.nan]]), "'positions' contains NaN or inf"),
        ("energy", np.inf, "'energy' is inf"),
        ("forces", np.zeros((2, 3)), r"'forces' has shape \(2, 3\); expected \(1, 3\)"),
        ("forces", np.array([[np.nan, 0, 0]]), "'forces' contains NaN"),
        ("stress", np.full((3, 3), np.nan), "'stress' contains NaN"),
    ],
)
def test_bad_values_are_named(field: str, value: object, pattern: str) -> None:
    s = Structure(numbers=[8], positions=np.zeros((1, 3)), info={"source": "x.extxyz", "index": 2})
    setattr(s, field, value)
    with pytest.raises(DataError, match=r"x\.extxyz, structure 2: field " + pattern):
        s.validate()


def test_required_label_absent() -> None:
    s = Structure(numbers=[8], positions=np.zeros((1, 3)), energy=1.0)
    s.info.update(source="t.db", index=0)
    s.validate(require=("energy",))
    with pytest.raises(DataError, match=r"t\.db, structure 0: field 'forces' is required"):
        s.validate(require=("energy", "forces"))
