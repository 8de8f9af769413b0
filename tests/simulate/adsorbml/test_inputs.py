"""Bad slabs and adsorbates give errors that say what is wrong and how to fix it."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.constraints import FixAtoms
from ase.io import write

from eqv2.simulate.adsorbml import check_slab, resolve_adsorbate


def test_good_slab_gives_fixed_mask(cu111):
    fixed = check_slab(cu111)
    np.testing.assert_array_equal(fixed, cu111.get_tags() == 0)


def test_tag_zero_is_fixed_when_there_is_no_fixatoms(cu111):
    cu111.set_constraint()
    np.testing.assert_array_equal(check_slab(cu111), cu111.get_tags() == 0)


def test_slab_without_tags(cu111):
    cu111.set_tags(0)
    with pytest.raises(ValueError, match="no tag-1 .surface. atoms.*set_tags"):
        check_slab(cu111)


def test_slab_with_adsorbate_tags(cu111):
    tags = cu111.get_tags()
    tags[-1] = 2
    cu111.set_tags(tags)
    with pytest.raises(ValueError, match="tag 2 marks adsorbate atoms: pass the clean slab"):
        check_slab(cu111)


def test_slab_without_free_atoms(cu111):
    cu111.set_constraint(FixAtoms(indices=range(len(cu111))))
    with pytest.raises(ValueError, match=r"all 12 atoms are fixed.*free the surface"):
        check_slab(cu111)


def test_slab_not_periodic_or_tilted(cu111):
    bad = cu111.copy()
    bad.pbc = False
    with pytest.raises(ValueError, match="periodic in x and y"):
        check_slab(bad)
    bad = cu111.copy()
    cell = bad.cell.array.copy()
    cell[0, 2] = 1.0
    bad.set_cell(cell)
    with pytest.raises(ValueError, match=r"\+z is the surface normal"):
        check_slab(bad)


def test_adsorbate_by_smiles_and_index():
    oh = resolve_adsorbate("*OH")
    assert oh.get_chemical_formula() == "HO" and oh.info["binding_indices"] == [0]
    assert (oh.get_tags() == 2).all()
    assert resolve_adsorbate(2).info["smiles"] == "*OH"


def test_unknown_adsorbate_name():
    with pytest.raises(ValueError, match=r"unknown adsorbate '\*XYZ'.*\*OH"):
        resolve_adsorbate("*XYZ")
    with pytest.raises(ValueError, match="index 999 out of range"):
        resolve_adsorbate(999)


def test_adsorbate_from_file_and_binding_indices(tmp_path):
    path = tmp_path / "co.xyz"
    write(path, Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.15]]))
    co = resolve_adsorbate(path)
    assert co.info["binding_indices"] == [0]
    assert resolve_adsorbate(str(path), binding_indices=[1]).info["binding_indices"] == [1]
    with pytest.raises(ValueError, match=r"binding_indices \[5\] out of range for 2 atoms"):
        resolve_adsorbate(path, binding_indices=[5])
