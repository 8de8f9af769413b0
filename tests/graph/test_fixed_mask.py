"""fixed_mask: FixAtoms constraints, optionally plus atoms with given tags."""

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms, FixBondLength

from eqv2.graph import fixed_mask


def test_fixatoms_and_tags():
    atoms = Atoms("H4", positions=np.arange(12.0).reshape(4, 3), tags=[0, 1, 2, 0])
    atoms.set_constraint([FixAtoms(indices=[1]), FixBondLength(2, 3)])
    assert fixed_mask(atoms).tolist() == [False, True, False, False]
    assert fixed_mask(atoms, (0,)).tolist() == [True, True, False, True]
    assert fixed_mask(atoms, (0, 2)).tolist() == [True, True, True, True]
