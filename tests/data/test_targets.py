import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.data.targets import (
    composition_matrix,
    fit_element_references,
    fit_normalizers,
    reference_energy,
)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_exact_linear_energies_are_recovered(seed):
    rng = np.random.default_rng(seed)
    elements = np.array([1, 6, 8, 29, 78])
    true = np.zeros(119)
    true[elements] = rng.normal(scale=3, size=len(elements))
    numbers = [rng.choice(elements, size=rng.integers(1, 12)) for _ in range(40)]
    energies = [reference_energy(z, true) for z in numbers]
    refs = fit_element_references(numbers, energies)
    counts = composition_matrix(numbers)
    if np.linalg.matrix_rank(counts[:, elements]) == len(elements):
        np.testing.assert_allclose(refs[elements], true[elements], atol=1e-9)
    np.testing.assert_allclose([reference_energy(z, refs) for z in numbers], energies, atol=1e-9)
    assert np.all(refs[np.setdiff1d(np.arange(119), elements)] == 0)


def test_normalizers_after_references():
    numbers = [np.array([29, 29]), np.array([29]), np.array([29, 29, 29])]
    refs = np.zeros(119)
    refs[29] = -3.0
    energies = [-6.0 + 0.1, -3.0 - 0.1, -9.0]
    norm = fit_normalizers(energies, [np.ones((2, 3)), np.ones((1, 3))], numbers, refs)
    assert norm["energy"]["mean"] == pytest.approx(0.0)
    assert norm["energy"]["std"] == pytest.approx(np.std([0.1, -0.1, 0.0]))
    assert norm["forces"] == {"mean": 0.0, "std": pytest.approx(1.0)}


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="Structure 1 has a non-finite energy"):
        fit_element_references([np.array([1]), np.array([1])], [0.0, float("nan")])
    with pytest.raises(ValueError, match="Structure 0 has atomic number 0"):
        composition_matrix([np.array([0, 1])])
