import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.data import DataError
from eqv2.data.targets import (
    RankDeficientFitWarning,
    composition_matrix,
    element_reference_array,
    fit_element_references,
    fit_normalizers,
    read_isolated_atom_energies,
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


def test_rank_deficient_fit_warns_and_names_the_elements():
    # Cu and O always occur as Cu2O: only the combination 2 Cu + O is determined; Pt varies.
    numbers = [np.array([29, 29, 8] * k + [78] * j) for k, j in ((1, 1), (2, 1), (3, 2))]
    energies = [reference_energy(z, _true_refs()) for z in numbers]
    with pytest.warns(RankDeficientFitWarning, match=r"references of O, Cu are not determined"):
        refs = fit_element_references(numbers, energies)
    # the data are still fitted exactly, and Pt (which varies freely) is exact
    for z, e in zip(numbers, energies, strict=True):
        assert reference_energy(z, refs) == pytest.approx(e)
    assert refs[78] == pytest.approx(_true_refs()[78])
    with pytest.warns(RankDeficientFitWarning, match="ridge regularisation"):
        fit_element_references(numbers, energies, ridge=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full rank: silent
        fit_element_references([np.array([29]), np.array([29, 8])], [1.0, 2.0])


def _true_refs() -> np.ndarray:
    refs = np.zeros(119)
    refs[[8, 29, 78]] = [-4.9, -3.7, -6.1]
    return refs


def test_isolated_atom_energies(tmp_path) -> None:  # noqa: ANN001
    import ase.io
    from ase import Atoms

    frames = [
        Atoms("C", info={"config_type": "IsolatedAtom", "REF_energy": -10.0}),
        Atoms("H", info={"config_type": "IsolatedAtom", "REF_energy": -0.5}),
        Atoms("CH4", positions=np.eye(5, 3), info={"config_type": "md", "REF_energy": -24.0}),
        Atoms("H", info={"config_type": "other", "REF_energy": -99.0}),  # not IsolatedAtom
    ]
    path = tmp_path / "train.extxyz"
    ase.io.write(path, frames)
    assert read_isolated_atom_energies(path, energy_key="REF_energy") == {"C": -10.0, "H": -0.5}
    refs = element_reference_array(read_isolated_atom_energies(path, energy_key="REF_energy"))
    assert refs[6] == -10.0 and refs[1] == -0.5 and refs.sum() == -10.5
    molecules = tmp_path / "mol.extxyz"
    ase.io.write(molecules, frames[2])
    with pytest.raises(DataError, match="no isolated atoms"):
        read_isolated_atom_energies(molecules)
    clash = tmp_path / "clash.xyz"
    ase.io.write(clash, [Atoms("H", info={"energy": -0.5}), Atoms("H", info={"energy": -0.6})])
    with pytest.raises(DataError, match="a second isolated H atom"):
        read_isolated_atom_energies(clash)


def test_shared_isolated_atoms_file() -> None:
    from tests.conftest import SHARED

    path = SHARED / "data" / "molecules" / "3bpa_isolated_atoms.xyz"
    if not path.exists():
        pytest.skip(f"fixture not found at {path} (place ../shared beside the repo)")
    e0s = read_isolated_atom_energies(path)
    assert sorted(e0s) == ["C", "H", "N", "O"]
    assert e0s["H"] == pytest.approx(-13.587222780835477, abs=0)
