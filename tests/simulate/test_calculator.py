import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress
from ase.constraints import FixAtoms
from ase.optimize import BFGS

from eqv2.model import Potential
from eqv2.simulate import EqV2Calculator
from tests.tiny import tiny_model

CUTOFF = dict(max_radius=4.5, max_neighbors=12, max_num_elements=30)


@pytest.fixture
def calc():
    return EqV2Calculator(Potential(tiny_model(**CUTOFF)))


def test_energy_forces_match_predict(calc):
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.calc = calc
    expected = calc.potential.predict(slab)
    assert slab.get_potential_energy() == pytest.approx(expected["energy"])
    assert slab.get_potential_energy(force_consistent=True) == pytest.approx(expected["energy"])
    np.testing.assert_allclose(slab.get_forces(), expected["forces"])
    # direct forces and no stress head: the energy's strain derivative is not offered as stress
    assert "stress" not in calc.implemented_properties
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()


def _voigt(s: np.ndarray) -> np.ndarray:
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def test_conservative_stress_is_ases_numerical_stress():
    """Sign and units: ASE's own finite-difference stress of the energy (float64)."""
    model = tiny_model(**CUTOFF, direct_forces=False)
    calc = EqV2Calculator(Potential(model), dtype=torch.float64)
    assert "stress" in calc.implemented_properties
    atoms = bulk("Cu", "fcc", a=3.7) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + [[0.02, 0.01, 0], [0.01, -0.01, 0], [0, 0, 0]]))
    atoms.calc = calc
    stress = atoms.get_stress()
    np.testing.assert_array_equal(
        stress, _voigt(calc.potential.predict(atoms, stress=True)["stress"])
    )
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    assert np.abs(numerical).max() > 1e-4  # a strained cell: the check has something to check
    np.testing.assert_allclose(stress, numerical, atol=1e-6, rtol=0)


def test_stress_head_model_matches_fixture_and_predict(checkpoints_dir):
    from tests.model.stress_cases import expected, structures

    exp = expected(checkpoints_dir, "omat")
    calc = EqV2Calculator(checkpoints_dir / "omat_stress_small.pt")
    assert "stress" in calc.implemented_properties
    potential = calc.potential
    for atoms, voigt in list(zip(structures(exp), exp["stress_voigt"], strict=True))[:3]:
        atoms.calc = calc
        stress = atoms.get_stress()
        np.testing.assert_allclose(stress, voigt, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(
            stress, _voigt(potential.predict(atoms, stress=True)["stress"])
        )


def test_constraints_are_respected_in_a_relaxation(calc):
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.set_constraint(FixAtoms(indices=range(4)))
    slab.calc = calc
    start = slab.positions.copy()
    BFGS(slab, logfile=None).run(fmax=0.05, steps=3)
    np.testing.assert_array_equal(slab.positions[:4], start[:4])
    assert np.allclose(slab.get_forces()[:4], 0.0)


def test_unknown_element_is_named(calc):
    atoms = molecule("CH3Cl")  # Cl (Z=17) fine; make one beyond max_num_elements
    atoms.numbers[0] = 40
    atoms.calc = calc
    with pytest.raises(ValueError, match="Z=40"):
        atoms.get_potential_energy()
