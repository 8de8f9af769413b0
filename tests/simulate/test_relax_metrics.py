import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from eqv2.simulate.relax_metrics import (
    ADWT_THRESHOLDS,
    average_distance_within_threshold,
    energy_mae,
    energy_within_threshold,
    mean_distance,
)

CUBIC = np.diag([10.0, 10.0, 10.0])
SKEWED = np.array([[1.0, 0.0, 0.0], [5.02, 0.3, 0.0], [0.0, 0.0, 10.0]])


def test_thresholds_are_oc20s():
    assert len(ADWT_THRESHOLDS) == 490
    np.testing.assert_allclose(ADWT_THRESHOLDS, np.arange(0.01, 0.5, 0.001), atol=1e-12)


def test_energy_mae_and_ewt_known_values():
    pred, ref = [1.0, 2.0, 3.0, 4.0], [1.01, 2.5, 3.0, 3.98]
    assert energy_mae(pred, ref) == pytest.approx((0.01 + 0.5 + 0.0 + 0.02) / 4)
    # 0.02 is not < 0.02 (OC20 uses a strict bound): 2 of 4 are within
    assert energy_within_threshold([0.0, 0.0, 0.0, 0.0], [0.01, 0.5, 0.0, 0.02]) == 0.5
    assert energy_within_threshold(pred, ref, threshold=1.0) == 1.0
    assert np.isnan(energy_mae([], [])) and np.isnan(energy_within_threshold([], []))
    with pytest.raises(ValueError, match="3 predicted energies but 2 reference"):
        energy_mae([1, 2, 3], [1, 2])


def test_adwt_known_values():
    # d = 0.1 is below thresholds 0.101 .. 0.499: 399 of 490
    assert average_distance_within_threshold([0.1]) == pytest.approx(399 / 490)
    # d = 0.2545 is below 0.255 .. 0.499: 245 of 490 = one half
    assert average_distance_within_threshold([0.2545]) == pytest.approx(0.5)
    assert average_distance_within_threshold([0.0, 0.5]) == pytest.approx(0.5)
    assert average_distance_within_threshold([0.0, 0.0]) == 1.0
    assert average_distance_within_threshold([0.6, np.nan]) == 0.0
    assert np.isnan(average_distance_within_threshold([]))


def test_atom_crossing_a_periodic_boundary():
    ref = np.array([[9.95, 5.0, 5.0], [1.0, 1.0, 1.0]])
    pred = np.array([[0.05, 5.0, 5.0], [1.0, 1.0, 1.3]])  # atom 0 moved +0.1 Å through x=10
    assert mean_distance(pred, ref, CUBIC, [True] * 3) == pytest.approx((0.1 + 0.3) / 2)
    # without periodicity the same atom moved 9.9 Å
    assert mean_distance(pred, ref, CUBIC, [False] * 3) == pytest.approx((9.9 + 0.3) / 2)


def test_skewed_cell_distance():
    # 0.14 Å along y, shifted by the lattice vector 2a - 3b of a strongly skewed cell
    ref = np.array([[0.5, 0.1, 5.0]])
    pred = ref + [0.0, 0.14, 0.0] + 2 * SKEWED[0] - 3 * SKEWED[1]
    assert mean_distance(pred, ref, SKEWED, [True, True, False]) == pytest.approx(0.14)


def test_fixed_atoms_are_excluded():
    ref = np.zeros((3, 3)) + 5.0
    pred = ref + np.array([[5.0, 0, 0], [0.1, 0, 0], [0, 0.3, 0]])
    counted = np.array([False, True, True])
    assert mean_distance(pred, ref, CUBIC * 3, True, counted) == pytest.approx(0.2)
    assert mean_distance(pred, ref, CUBIC * 3, True) == pytest.approx(5.4 / 3)
    with pytest.raises(ValueError, match="s7: every atom is fixed"):
        mean_distance(pred, ref, CUBIC, True, np.zeros(3, bool), label="s7")
    with pytest.raises(ValueError, match="s7: predicted positions have shape"):
        mean_distance(pred[:2], ref, CUBIC, True, label="s7")


@settings(max_examples=40, deadline=None)
@given(
    cell=arrays(np.float64, (3, 3), elements=st.floats(-1.0, 1.0)).map(
        lambda m: np.diag([4.0, 5.0, 6.0]) + 1.5 * m
    ),
    ref=arrays(np.float64, (5, 3), elements=st.floats(0.0, 8.0)),
    step=arrays(np.float64, (5, 3), elements=st.floats(-0.3, 0.3)),
    jumps=arrays(np.int64, (5, 3), elements=st.integers(-2, 2)),
)
def test_distance_ignores_lattice_translations_of_single_atoms(cell, ref, step, jumps):
    pbc = np.array([True, True, False])
    jumps[:, 2] = 0  # no translation along the open axis
    pred = ref + step
    moved = pred + jumps @ cell
    a = mean_distance(pred, ref, cell, pbc)
    b = mean_distance(moved, ref, cell, pbc)
    assert b == pytest.approx(a, abs=1e-9)
    assert a <= np.linalg.norm(step, axis=1).mean() + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    d=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20),
    extra=st.lists(st.floats(0.0, 0.3), min_size=20, max_size=20),
)
def test_adwt_is_a_fraction_and_falls_as_distances_grow(d, extra):
    a = average_distance_within_threshold(d)
    b = average_distance_within_threshold(np.asarray(d) + np.asarray(extra[: len(d)]))
    assert 0.0 <= b <= a <= 1.0
