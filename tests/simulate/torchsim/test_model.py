"""EqV2TorchSimModel: torch-sim's own interface checks and consistency with eqv2's ASE
calculator (energy, forces, stress in torch-sim's sign), batched and alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule

from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)
from tests.simulate.torchsim.conftest import SKIP_REASON, small_cells

ts = pytest.importorskip("torch_sim", reason=SKIP_REASON)

from torch_sim.elastic import full_3x3_to_voigt_6_stress  # noqa: E402
from torch_sim.models.interface import validate_model_outputs  # noqa: E402

from eqv2.model import EquiformerV2, EquiformerV2Config, Potential  # noqa: E402
from eqv2.simulate import EqV2Calculator  # noqa: E402
from eqv2.simulate.torchsim import EqV2TorchSimModel, state_from_atoms  # noqa: E402
from tests.tiny import tiny  # noqa: E402


def _structures():
    """Periodic cells of several shapes (cubic, fcc primitive, distorted, supercell)."""
    distorted = bulk("Al", "fcc", a=4.05, cubic=True)
    strain = np.array([[1.0, 0.03, 0.0], [0.0, 0.98, 0.02], [0.01, 0.0, 1.04]])
    distorted.set_cell(distorted.cell.array @ strain, scale_atoms=True)
    fe = bulk("Fe", "bcc", a=2.87, cubic=True).repeat((2, 1, 1))
    fe.rattle(0.03, seed=2)
    return [*small_cells(2), distorted, fe]


def _assert_matches_calculator(model, calc, structures, tol):
    """torch-sim's comparison: energy, forces and Voigt stress against Atoms' results, for
    each structure alone and for all of them in one state."""
    batched = model(state_from_atoms(structures, model.device, model.dtype))
    start = 0
    for k, atoms in enumerate(structures):
        alone = model(state_from_atoms(atoms, model.device, model.dtype))
        atoms = atoms.copy()
        atoms.calc = calc
        n = len(atoms)
        for out, rows in ((alone, slice(0, n)), (batched, slice(start, start + n))):
            index = 0 if out is alone else k
            got_e = float(out["energy"][index])
            assert got_e == pytest.approx(atoms.get_potential_energy(), rel=tol, abs=tol)
            np.testing.assert_allclose(out["forces"][rows].double().numpy(), atoms.get_forces(),
                                       rtol=tol, atol=tol)  # fmt: skip
            voigt = full_3x3_to_voigt_6_stress(out["stress"][index : index + 1])[0]
            np.testing.assert_allclose(
                voigt.double().numpy(), atoms.get_stress(), rtol=tol, atol=tol
            )
        start += n


def test_torchsim_interface_checks_pass(model64):
    validate_model_outputs(model64, torch.device("cpu"), torch.float64)
    assert model64.compute_forces and model64.compute_stress


def test_conservative_model_matches_ase_calculator(model64, potential64):
    calc = EqV2Calculator(potential64)
    _assert_matches_calculator(model64, calc, _structures(), tol=1e-10)
    # an open molecule (cell of zeros) has energy and forces; its stress is not defined
    mol = molecule("CH3OH")
    out = EqV2TorchSimModel(potential64, compute_stress=False)(
        state_from_atoms(mol, "cpu", torch.float64)
    )
    mol.calc = calc
    assert float(out["energy"][0]) == pytest.approx(mol.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(out["forces"].numpy(), mol.get_forces(), atol=1e-10)
    assert set(out) == {"energy", "forces"}


def test_stress_head_checkpoint_matches_ase_calculator(omat_model):
    """The OMat24-family fixture: direct forces and a stress head (its random head gives a
    pressure of about +1.4 GPa), float32 as released; torch-sim's default tolerance 1e-5."""
    model = omat_model
    assert model.dtype == torch.float32 and model.compute_stress
    validate_model_outputs(model, torch.device("cpu"), torch.float32)
    structures = _structures()[:2]
    _assert_matches_calculator(model, EqV2Calculator(model.potential), structures, tol=1e-5)
    stress = model(state_from_atoms(structures[0], "cpu", torch.float32))["stress"][0]
    pressure_GPa = -float(torch.diagonal(stress).mean()) / units.GPa
    assert 1.0 < pressure_GPa < 2.0  # ASE's sign passed through: compressed, wants to expand


def test_direct_model_without_stress_head_has_no_stress():
    torch.manual_seed(0)
    config = EquiformerV2Config(**tiny(lmax_list=[1], mmax_list=[1], grid_resolution=6,
                                       max_radius=3.5, direct_forces=True))  # fmt: skip
    potential = Potential(EquiformerV2(config))
    assert not EqV2TorchSimModel(potential).compute_stress
    with pytest.raises(ValueError, match="neither a stress head nor conservative forces"):
        EqV2TorchSimModel(potential, compute_stress=True)


def test_memory_scaling_follows_the_neighbour_cap(potential64):
    assert EqV2TorchSimModel(potential64).memory_scales_with == "n_atoms"  # max_neighbors=500
    from tests.simulate.relax.tiny_relax import make_potential

    uncapped = make_potential(torch.float64, max_neighbors=None)
    assert EqV2TorchSimModel(uncapped).memory_scales_with == "n_atoms_x_density"


def test_state_dtype_must_match(model64):
    state = state_from_atoms(small_cells(1), "cpu", torch.float32)
    with pytest.raises(ValueError, match="state is torch.float32 but the model runs in"):
        model64(state)


def test_state_keeps_input_unchanged_and_cells_as_columns(model64):
    atoms = small_cells(2)[1]  # fcc primitive: a non-symmetric cell matrix
    state = state_from_atoms(atoms, "cpu", torch.float64)
    np.testing.assert_array_equal(state.cell[0].T.numpy(), atoms.cell.array)
    before = state.positions.clone()
    model64(state)
    assert torch.equal(before, state.positions)
