"""Surface atoms and symmetry-distinct sites on fcc facets with known answers."""

from __future__ import annotations

import numpy as np
from ase.build import fcc100, fcc110, fcc111, fcc211
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.adsorption import find_sites, surface_atoms
from tests.simulate.adsorbml.conftest import tagged_slab


def _kinds(sites):
    return [(s.kind, len(s.atoms)) for s in sites]


def test_fcc111_has_ontop_bridge_fcc_and_hcp():
    slab = tagged_slab(fcc111, (3, 3, 3))
    sites = find_sites(slab)
    assert _kinds(sites) == [("ontop", 1), ("bridge", 2), ("hollow", 3), ("hollow", 3)]
    # 9 atoms, 27 edges, 18 triangles (9 fcc + 9 hcp) in a 3x3 cell
    assert [s.multiplicity for s in sites] == [9, 27, 9, 9]
    # fcc and hcp differ by the second-layer atom under the hcp hollow
    z = np.unique(np.round(slab.positions[:, 2], 3))
    second = slab.positions[np.isclose(slab.positions[:, 2], z[-2], atol=1e-3)]
    below = []
    for s in sites[2:]:
        d = np.linalg.norm(second[:, :2] - s.position[:2], axis=1)
        below.append(d.min() < 0.1)
    assert sorted(below) == [False, True]


def test_fcc100_square_hollow_is_one_site():
    sites = find_sites(tagged_slab(fcc100, (2, 2, 3)))
    assert _kinds(sites) == [("ontop", 1), ("bridge", 2), ("hollow", 4)]
    assert [s.multiplicity for s in sites] == [4, 8, 4]


def test_unique_false_lists_every_site():
    slab = tagged_slab(fcc111, (2, 2, 3))
    assert len(find_sites(slab, unique=False)) == 4 + 12 + 8


def test_surface_atoms_are_the_top_layer():
    for builder in (fcc111, fcc100):
        slab = tagged_slab(builder, (3, 3, 4), free_layers=2)
        top = surface_atoms(slab)
        assert len(top) == 9
        assert np.allclose(slab.positions[top, 2], slab.positions[:, 2].max())


def test_surface_atoms_of_open_and_stepped_facets():
    # (110): the rows and the trough atoms between them are reachable
    slab = tagged_slab(fcc110, (2, 2, 4), free_layers=2)
    assert len(surface_atoms(slab)) == 8
    # (211): the three rows of each terrace, not the atoms beneath
    slab = fcc211("Cu", (3, 3, 4), vacuum=6.0, orthogonal=True)
    top = surface_atoms(slab)
    heights = np.unique(np.round(slab.positions[top, 2], 2))
    assert len(top) == 9 and len(heights) == 3


def test_alloy_breaks_symmetry():
    slab = tagged_slab(fcc111, (3, 3, 3))
    pure = len(find_sites(slab))
    symbols = slab.get_chemical_symbols()
    symbols[-1] = "Pt"  # one top-layer atom
    slab.set_chemical_symbols(symbols)
    sites = find_sites(slab)
    assert len(sites) > pure
    # ontop: the Pt, its 6 Cu neighbours, the 2 Cu second neighbours of the 3x3 cell
    assert sorted(s.multiplicity for s in sites if s.kind == "ontop") == [1, 2, 6]


def test_small_distortions_make_sites_distinct():
    slab = tagged_slab(fcc111, (2, 2, 3))
    top = int(np.argmax(slab.positions[:, 2]))
    slab.positions[top, 0] += 0.2  # one surface atom shifted 0.2 A in the plane
    ontop = [s for s in find_sites(slab) if s.kind == "ontop"]
    assert len(ontop) > 1


@settings(max_examples=10, deadline=None)
@given(
    shift=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    builder=st.sampled_from([fcc111, fcc100]),
)
def test_sites_do_not_depend_on_where_the_slab_sits_in_the_cell(shift, builder):
    slab = tagged_slab(builder, (2, 2, 3))
    moved = slab.copy()
    moved.positions[:, :2] += np.array(shift) @ slab.cell.array[:2, :2]
    moved.wrap()
    a, b = find_sites(slab), find_sites(moved)
    assert _kinds(a) == _kinds(b)
    assert [s.multiplicity for s in a] == [s.multiplicity for s in b]
