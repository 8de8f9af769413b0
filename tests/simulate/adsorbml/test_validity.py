"""Each AdsorbML constraint on hand-made relaxed structures."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.simulate.adsorbml import check_validity
from eqv2.simulate.adsorbml.validity import (
    BOND_SKIN,
    connectivity,
    has_surface_changed,
    is_desorbed,
    is_dissociated,
    is_intercalated,
)
from tests.simulate.adsorbml.conftest import tagged_slab


@pytest.fixture
def oh_on_cu():
    """OH over a Cu(111) top-layer atom: O 1.9 A above it, H 0.97 A above O."""
    slab = tagged_slab(fcc111, (2, 2, 3))
    top = int(np.argmax(slab.positions[:, 2]))
    base = slab.positions[top]
    ads = Atoms("OH", positions=[base + [0, 0, 1.9], base + [0, 0, 1.9 + 0.97]], tags=[2, 2])
    return slab + ads


def test_intact_structure_is_valid(oh_on_cu):
    validity = check_validity(oh_on_cu, oh_on_cu.copy())
    assert validity.valid and validity.reasons == []


def test_desorbed_molecule(oh_on_cu):
    final = oh_on_cu.copy()
    final.positions[-2:, 2] += 4.0  # O now ~5.9 A above the surface: floats away
    validity = check_validity(oh_on_cu, final)
    assert validity.reasons == ["desorbed"] and is_desorbed(final)
    # just inside the 1.5x cushion it still counts as bound: 1.5*(0.66+1.32)+0.6 = 3.57 A
    close = oh_on_cu.copy()
    close.positions[-2:, 2] += 3.5 - 1.9
    assert not is_desorbed(close)


def test_broken_bond(oh_on_cu):
    final = oh_on_cu.copy()
    final.positions[-1] = final.positions[-2] + [2.5, 0, 0.4]  # H 2.5 A away from O
    validity = check_validity(oh_on_cu, final)
    assert validity.reasons == ["dissociated"] and is_dissociated(oh_on_cu, final)


def test_formed_bond_is_dissociation_too(oh_on_cu):
    initial = oh_on_cu.copy()
    initial.positions[-1] = initial.positions[-2] + [0, 0, 2.0]  # O and H not bonded yet
    assert is_dissociated(initial, oh_on_cu)


def test_moved_slab_atom(oh_on_cu):
    final = oh_on_cu.copy()
    free = int(np.flatnonzero(final.get_tags() == 1)[1])
    # a surface atom pulled 3.5 A out: its bonds to the layer below (2.55 A) stretch to 5.8 A,
    # beyond even the cushioned cut-off 1.5 * (1.32 + 1.32) + 0.6 = 4.56 A
    final.positions[free, 2] += 3.5
    validity = check_validity(oh_on_cu, final)
    assert validity.reasons == ["surface_changed"]
    # a small relaxation of the same atom is no reconstruction
    final.positions[free, 2] -= 3.2
    assert check_validity(oh_on_cu, final).valid


def test_surface_change_is_judged_against_the_given_clean_slab(oh_on_cu):
    slab = oh_on_cu[oh_on_cu.get_tags() != 2]
    moved = slab.copy()
    moved.positions[0, 2] -= 2.5  # a reconstructed "clean slab" disagrees with the adslab
    assert has_surface_changed(oh_on_cu, moved)
    assert not has_surface_changed(oh_on_cu, slab)
    with pytest.raises(ValueError, match="does not match the slab atoms"):
        has_surface_changed(oh_on_cu, slab[:-1])


def test_intercalated(oh_on_cu):
    final = oh_on_cu.copy()
    fixed = int(np.flatnonzero(final.get_tags() == 0)[0])
    final.positions[-2] = final.positions[fixed] + [0.0, 0.0, 1.6]  # O next to a fixed atom
    final.positions[-1] = final.positions[-2] + [0, 0, 0.97]
    assert is_intercalated(final)
    assert not is_intercalated(oh_on_cu)


def test_bonds_cross_periodic_boundaries():
    atoms = Atoms("H2", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=[5, 5, 5], pbc=True)
    assert connectivity(atoms)[0, 1]  # 0.2 A apart through the boundary
    atoms.pbc = False
    assert not connectivity(atoms)[0, 1]


def test_bond_criterion_includes_ase_skin():
    # H-H: r(H) + r(H) + 2 * 0.3 A skin = 1.22 A
    assert BOND_SKIN == 0.3
    limit = 1.22
    assert connectivity(Atoms("H2", positions=[[0, 0, 0], [0, 0, limit - 0.01]]))[0, 1]
    assert not connectivity(Atoms("H2", positions=[[0, 0, 0], [0, 0, limit + 0.01]]))[0, 1]


def test_missing_adsorbate_tags_are_reported(oh_on_cu):
    bare = oh_on_cu.copy()
    bare.set_tags(0)
    with pytest.raises(ValueError, match="no adsorbate atom .tag 2."):
        check_validity(bare, bare)
    with pytest.raises(ValueError, match="not the same atoms"):
        check_validity(oh_on_cu, oh_on_cu[:-1])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), amplitude=st.floats(0.05, 1.5))
def test_check_validity_equals_the_four_separate_checks(seed, amplitude):
    """The shared-neighbour-list path agrees with each check on randomly shaken structures."""
    slab = tagged_slab(fcc111, (2, 2, 3))
    top = int(np.argmax(slab.positions[:, 2]))
    base = slab.positions[top]
    ads = Atoms("OH", positions=[base + [0, 0, 1.9], base + [0, 0, 2.87]], tags=[2, 2])
    initial = slab + ads
    final = initial.copy()
    final.rattle(amplitude, seed=seed)
    clean = slab.copy()
    clean.rattle(0.3 * amplitude, seed=seed + 1)
    for reference in (None, clean):
        got = check_validity(initial, final, reference)
        ref_slab = reference if reference is not None else initial[initial.get_tags() != 2]
        assert got.desorbed == is_desorbed(final)
        assert got.dissociated == is_dissociated(initial, final)
        assert got.surface_changed == has_surface_changed(final, ref_slab)
        assert got.intercalated == is_intercalated(final)


def test_clean_slab_bonds_are_computed_once_per_slab(oh_on_cu, monkeypatch):
    from eqv2.simulate.adsorbml import validity

    slab = oh_on_cu[oh_on_cu.get_tags() != 2]
    slab.positions[0, 0] += 1e-4  # a slab no other test has cached
    searched = []
    real = validity.connectivities
    monkeypatch.setattr(
        validity, "connectivities", lambda a, s: searched.append(len(a)) or real(a, s)
    )
    for _ in range(3):
        check_validity(oh_on_cu, oh_on_cu.copy(), slab)
    # the clean slab once, the final structure once per call
    assert searched.count(len(slab)) == 1
    assert searched.count(len(oh_on_cu)) == 3
