"""The shared placement rule (eqv2.adsorption.placement)."""

from __future__ import annotations

import numpy as np
from ase.build import fcc111, molecule
from ase.geometry import find_mic
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.adsorption import align_to_z, place_adsorbate, rotation_about
from eqv2.adsorption.placement import MIN_IMAGE_DISTANCE, MIN_OTHER_DISTANCE


@given(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1))
@settings(max_examples=50, deadline=None)
def test_align_to_z_is_a_rotation_onto_z(x, y, z):
    v = np.array([x, y, z])
    r = align_to_z(v)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) > 0
    if np.linalg.norm(v) > 1e-3:
        np.testing.assert_allclose(r @ v, [0, 0, np.linalg.norm(v)], atol=1e-9)


def test_rotation_about_axis_keeps_the_axis():
    axis = np.array([1.0, 2.0, -0.5])
    r = rotation_about(axis, 0.7)
    np.testing.assert_allclose(r @ axis, axis, atol=1e-12)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)


def _in_plane_distances(slab, pos):
    d = slab.positions[None, :, :] - pos[:, None, :]
    flat = d.reshape(-1, 3)
    vec, _ = find_mic(flat, slab.cell, [True, True, False])
    return np.linalg.norm(vec.reshape(d.shape), axis=-1)


def test_binding_atom_touches_at_the_bond_length_and_others_keep_clear():
    slab = fcc111("Cu", (3, 3, 3), vacuum=8.0)
    ads = molecule("CH3OH")
    binding = np.array([0])  # the carbon
    for seed in range(5):
        rng = np.random.default_rng(seed)
        xy = slab.positions[-1, :2]
        pos = place_adsorbate(slab, ads, binding, xy, 2.0, rng)
        assert pos is not None
        d = _in_plane_distances(slab, pos)
        assert d[0].min() >= 2.0 - 1e-9
        others = np.delete(np.arange(len(ads)), binding)
        assert d[others].min() >= MIN_OTHER_DISTANCE - 1e-9
        # touching: some atom sits exactly at its required distance
        need = np.full(len(ads), MIN_OTHER_DISTANCE)
        need[binding] = 2.0
        assert np.isclose((d.min(axis=1) - need).min(), 0.0, atol=1e-9)
        # the molecule keeps its shape
        np.testing.assert_allclose(
            np.linalg.norm(pos[:, None] - pos[None], axis=-1),
            np.linalg.norm(ads.positions[:, None] - ads.positions[None], axis=-1),
            atol=1e-9,
        )


def test_a_molecule_longer_than_the_cell_clashes_with_its_images():
    slab = fcc111("Cu", (1, 1, 3), vacuum=8.0)  # 2.55 A in-plane period
    ads = molecule("C6H6")
    rng = np.random.default_rng(0)
    assert place_adsorbate(slab, ads, np.array([0]), slab.positions[-1, :2], 2.0, rng) is None
    assert MIN_IMAGE_DISTANCE > 0
