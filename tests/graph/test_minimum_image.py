import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from eqv2.graph.minimum_image import minimum_image, reduce_lattice

CUBIC = np.diag([10.0, 10.0, 10.0])
# b is nearly parallel to a: the shortest lattice vector b - 5a = (0.02, 0.3, 0) hides behind
# large fractional coordinates, so rounding them does not give the minimum image.
SKEWED = np.array([[1.0, 0.0, 0.0], [5.02, 0.3, 0.0], [0.0, 0.0, 10.0]])


def test_atom_crossing_a_periodic_face_and_an_open_one():
    d = np.array([[0.05, 5.0, 0.1]]) - np.array([[9.95, 5.0, 9.9]])
    np.testing.assert_allclose(minimum_image(d, CUBIC, [True, True, False]), [[0.1, 0, -9.8]])
    np.testing.assert_allclose(minimum_image(d, CUBIC, True), [[0.1, 0, 0.2]], atol=1e-12)
    np.testing.assert_array_equal(minimum_image(d, CUBIC, False), d)


def test_skewed_cell_finds_the_true_minimum_image():
    short = np.array([0.0, 0.14, 0.0])  # < half the shortest lattice vector: unique image
    lattice = 2 * SKEWED[0] - 3 * SKEWED[1]
    d = minimum_image((short + lattice)[None], SKEWED, [True, True, False])
    np.testing.assert_allclose(d[0], short, atol=1e-12)
    # rounding fractional coordinates (OC20's wrap) would give a 2 Å vector here
    frac = np.linalg.solve(SKEWED.T, short)
    frac[:2] -= np.round(frac[:2])
    assert np.linalg.norm(frac @ SKEWED) > 1.9


def test_open_axes_skewed_against_the_periodic_one():
    # the component along the open b and c must not leak into the wrap along a (ASE's
    # find_mic 3.29 returns |(0.5, 1.5, 1.5)| = 2.18 here)
    cell = np.array([[2.5, 1.5, 1.5], [1.5, 6.5, 1.5], [1.5, 1.5, 7.5]])
    d = minimum_image([[3.0, 3.0, 3.0]], cell, [True, False, False])
    np.testing.assert_allclose(d, [[-2.0, 0.0, 0.0]], atol=1e-12)


def test_zero_cell_without_periodicity_and_singular_periodic_cell():
    d = np.array([[3.0, 4.0, 0.0]])
    np.testing.assert_array_equal(minimum_image(d, np.zeros((3, 3)), False), d)
    with pytest.raises(ValueError, match="slab 3 is periodic along b"):
        minimum_image(d, np.diag([1.0, 0.0, 0.0]), [True, True, False], label="slab 3")


def test_reduce_lattice_keeps_the_lattice_and_shortens_it():
    reduced = reduce_lattice(SKEWED[:2])
    change = np.linalg.solve(SKEWED[:2, :2].T, reduced[:, :2].T).T  # reduced = change @ basis
    np.testing.assert_allclose(change, np.round(change), atol=1e-9)
    assert abs(round(np.linalg.det(change))) == 1
    assert np.linalg.norm(reduced, axis=1).max() < 1.1


def _brute_force(d: np.ndarray, basis: np.ndarray, reach: int = 4) -> np.ndarray:
    """Shortest of d + n @ basis over a cube of n around the least-squares lattice point."""
    centre = np.round(np.linalg.lstsq(basis.T, d.T, rcond=None)[0].T)
    steps = range(-reach, reach + 1)
    n = centre[:, None, :] + np.array(list(itertools.product(steps, repeat=len(basis))))[None]
    cand = d[:, None, :] - n @ basis
    return cand[np.arange(len(d)), np.linalg.norm(cand, axis=2).argmin(axis=1)]


cells = arrays(np.float64, (3, 3), elements=st.floats(-1.0, 1.0)).map(
    lambda m: np.diag([4.0, 5.0, 6.0]) + 1.5 * m
)
pbcs = st.tuples(st.booleans(), st.booleans(), st.booleans()).map(np.array)
vectors = arrays(np.float64, (4, 3), elements=st.floats(-12.0, 12.0))


def _check(got: np.ndarray, d: np.ndarray, cell: np.ndarray, pbc: np.ndarray, want: np.ndarray):
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1), atol=1e-9)
    # the result differs from the input by a lattice vector on periodic axes only
    n = np.linalg.solve(cell.T, (got - d).T).T
    np.testing.assert_allclose(n, np.round(n), atol=1e-6)
    assert np.all(np.round(n)[:, ~pbc] == 0)


@settings(max_examples=60, deadline=None)
@given(cell=cells, pbc=pbcs, d=vectors)
def test_minimum_image_is_the_shortest_image(cell, pbc, d):
    want = _brute_force(d, cell[pbc]) if pbc.any() else d
    _check(minimum_image(d, cell, pbc), d, cell, pbc, want)


@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(1.0, 4.0),
    shear=st.integers(-6, 6),
    offset=st.tuples(st.floats(-0.5, 0.5), st.floats(0.3, 1.0)),
    d=vectors,
)
def test_minimum_image_in_strongly_sheared_cells(a, shear, offset, d):
    # b = shear * a + small: the lattice is that of (a, small), which brute force can search
    small = np.array([offset[0], offset[1], 0.0])
    cell = np.array([[a, 0.0, 0.0], shear * np.array([a, 0.0, 0.0]) + small, [0.0, 0.0, 9.0]])
    pbc = np.array([True, True, False])
    want = _brute_force(d, np.stack([cell[0], small]), reach=12)
    _check(minimum_image(d, cell, pbc), d, cell, pbc, want)
