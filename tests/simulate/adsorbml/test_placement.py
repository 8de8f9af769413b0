"""Placements: count, distinct sites, tags, constraints, no clashes, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.graph import fixed_mask
from eqv2.simulate.adsorbml import generate_placements, min_contact_ratio, resolve_adsorbate
from eqv2.simulate.adsorbml.placement import CLASH_RATIO
from tests.simulate.adsorbml.conftest import tagged_slab

OH = Atoms("OH", positions=[[0, 0, 0], [0.3, 0, 0.92]], info={"binding_indices": [0]})


def _oh():
    return resolve_adsorbate(OH)


def test_count_tags_constraints_and_info(cu111):
    placements = generate_placements(cu111, _oh(), 10, seed=0)
    assert len(placements) == 10
    n = len(cu111)
    for k, atoms in enumerate(placements):
        assert len(atoms) == n + 2
        np.testing.assert_array_equal(atoms.get_tags()[:n], cu111.get_tags())
        np.testing.assert_array_equal(atoms.get_tags()[n:], [2, 2])
        np.testing.assert_array_equal(fixed_mask(atoms)[:n], cu111.get_tags() == 0)
        assert not fixed_mask(atoms)[n:].any()
        np.testing.assert_array_equal(atoms.positions[:n], cu111.positions)
        assert atoms.info["placement_id"] == k and atoms.info["binding_indices"] == [n]
        # the molecule is moved rigidly
        assert np.linalg.norm(atoms.positions[n + 1] - atoms.positions[n]) == pytest.approx(
            np.linalg.norm(OH.positions[1] - OH.positions[0])
        )
    kinds = [a.info["site"] for a in placements]
    # 4 distinct sites on (111), round-robin over kinds, then random ones
    assert kinds[:4] == ["ontop", "bridge", "hollow", "hollow"]
    assert kinds[4:] == ["random"] * 6
    assert [a.info["placement"] for a in placements[:5]] == ["heuristic"] * 4 + ["random"]


def test_heuristic_sites_are_distinct(cu111):
    placements = generate_placements(cu111, _oh(), 4, random=False)
    xy = np.array([a.info["site_position"] for a in placements])
    assert len(placements) == 4
    assert min(np.linalg.norm(xy[i] - xy[j]) for i in range(4) for j in range(i)) > 0.5
    # only heuristic: no more placements than distinct sites
    assert len(generate_placements(cu111, _oh(), 20, random=False)) == 4


def test_binding_atom_sits_a_bond_length_above_the_surface(cu111):
    n = len(cu111)
    for atoms in generate_placements(cu111, _oh(), 8, seed=2):
        d = atoms.get_distances(n, range(n), mic=True)
        # touching its nearest Cu at the covalent bond length r(O) + r(Cu) = 0.66 + 1.32
        assert d.min() == pytest.approx(0.66 + 1.32, abs=1e-6)
        assert atoms.positions[n, 2] > cu111.positions[:, 2].max() + 0.5


def test_deterministic_and_independent_of_the_count(cu111):
    a = generate_placements(cu111, _oh(), 8, seed=5)
    b = generate_placements(cu111, _oh(), 8, seed=5)
    c = generate_placements(cu111, _oh(), 12, seed=5)
    d = generate_placements(cu111, _oh(), 8, seed=6)
    for x, y, z in zip(a, b, c, strict=False):
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_array_equal(x.positions, z.positions)
    assert any(not np.allclose(x.positions, y.positions) for x, y in zip(a, d, strict=True))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9))
def test_no_clashes_for_any_seed(seed, n):
    slab = tagged_slab(fcc111, (2, 2, 3))
    ads = resolve_adsorbate(Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.2], [0.9, 0, -0.7]]))
    placements = generate_placements(slab, ads, n, seed=seed)
    assert len(placements) == n
    assert all(min_contact_ratio(a) >= CLASH_RATIO for a in placements)


def test_bad_arguments(cu111):
    with pytest.raises(ValueError, match="n_placements must be an int >= 1"):
        generate_placements(cu111, _oh(), 0)
    with pytest.raises(ValueError, match="at least one placement strategy"):
        generate_placements(cu111, _oh(), 3, heuristic=False, random=False)


def test_adsorbate_too_big_for_the_cell_is_refused():
    slab = tagged_slab(fcc111, (1, 1, 3))
    # bound at both ends, the chain lies flat and meets its periodic images
    chain = Atoms("C4", positions=[[1.4 * i, 0, 0] for i in range(4)])
    chain.info["binding_indices"] = [0, 3]
    with pytest.raises(ValueError, match="could not place .* without clashes.*larger cell"):
        generate_placements(slab, resolve_adsorbate(chain), 2)


def test_placements_touching_the_periodic_image_of_the_slab_are_rejected():
    slab = tagged_slab(fcc111, (2, 2, 3))
    slab.pbc = True
    cell = slab.cell.array.copy()
    cell[2, 2] = np.ptp(slab.positions[:, 2]) + 4.0  # 4 A from the top to the next slab
    slab.set_cell(cell)
    slab.positions[:, 2] -= slab.positions[:, 2].min()
    with pytest.raises(ValueError, match="could not place .* without clashes.*more vacuum"):
        generate_placements(slab, _oh(), 2)


def test_min_contact_ratio_by_hand(cu111):
    top = int(np.argmax(cu111.positions[:, 2]))
    atoms = cu111 + Atoms("H", positions=[cu111.positions[top] + [0, 0, 0.815]], tags=[2])
    assert min_contact_ratio(atoms) == pytest.approx(0.815 / (0.31 + 1.32))
    assert min_contact_ratio(cu111) == float("inf")  # no adsorbate
