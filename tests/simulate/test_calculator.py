import numpy as np
import pytest
import torch
from ase.build import fcc111, molecule
from ase.constraints import FixAtoms
from ase.optimize import BFGS

from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.simulate import EqV2Calculator
from tests.tiny import tiny

TINY = tiny(
    ffn_hidden_channels=8,
    lmax_list=[2],
    mmax_list=[1],
    grid_resolution=8,
    max_radius=4.5,
    max_neighbors=12,
    max_num_elements=30,
)


@pytest.fixture
def calc():
    torch.manual_seed(0)
    return EqV2Calculator(Potential(EquiformerV2(EquiformerV2Config(**TINY))))


def test_energy_forces_match_predict(calc):
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.calc = calc
    expected = calc.potential.predict(slab)
    assert slab.get_potential_energy() == pytest.approx(expected["energy"])
    assert slab.get_potential_energy(force_consistent=True) == pytest.approx(expected["energy"])
    np.testing.assert_allclose(slab.get_forces(), expected["forces"])
    stress = slab.get_stress()
    assert stress.shape == (6,) and np.isfinite(stress).all()


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
