"""Energy-conserving forces (−dE/dx) and strain-derivative stress."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from eqv2.model import Potential
from tests.tiny import tiny_model

#: the shared tiny model with a finer grid, the grid MLP and no dropout
VARIANT = dict(
    grid_resolution=12,
    max_radius=4.0,
    max_neighbors=30,
    norm_type="layer_norm_sh",
    alpha_drop=0.0,
    drop_path_rate=0.0,
    use_grid_mlp=True,
    weight_init="uniform",
)


def _potential(direct_forces: bool) -> Potential:
    model = tiny_model(**VARIANT, direct_forces=direct_forces)
    return Potential(model, {"energy": {"mean": 0.3, "std": 2.0}}).to(torch.float64)


def _structures():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    mol = molecule("CH3OH")
    mol.rattle(0.05, seed=2)
    return [cu, mol]


def test_conservative_model_has_no_force_head_and_predicts_gradients():
    pot = _potential(direct_forces=False)
    assert pot.conservative and pot.model.force_block is None
    atoms = _structures()[1]
    result = pot.predict(atoms)
    h = 1e-5
    for i, k in [(0, 0), (2, 1), (4, 2)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        fd = -(pot.predict(plus)["energy"] - pot.predict(minus)["energy"]) / (2 * h)
        assert abs(result["forces"][i, k] - fd) < 1e-7 * max(1.0, abs(fd))
    # translation invariance of the energy makes the forces sum to zero
    np.testing.assert_allclose(result["forces"].sum(0), 0.0, atol=1e-10)


@pytest.mark.parametrize("direct_forces", [True, False])
def test_stress_is_the_strain_derivative(direct_forces):
    pot = _potential(direct_forces)
    atoms = _structures()[0]
    result = pot.predict(atoms, stress=True)
    stress = result["stress"]
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    # small step: the narrow Gaussian basis makes the energy curve sharply (h² error term)
    h = 1e-6
    volume = atoms.get_volume()
    for a, b in [(0, 0), (1, 2), (2, 2)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / 2 if a != b else h
        energies = []
        for sign in (1, -1):
            strained = atoms.copy()
            strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            energies.append(pot.predict(strained)["energy"])
        fd = (energies[0] - energies[1]) / (2 * h) / volume
        assert abs(stress[a, b] - fd) < 1e-6 * max(1e-3, abs(fd)), (a, b, stress[a, b], fd)


def test_conservative_forces_batched_equal_single():
    pot = _potential(direct_forces=False)
    structures = _structures()
    batched = pot.predict(structures, batch_size=2)
    for atoms, res in zip(structures, batched, strict=True):
        single = pot.predict(atoms)
        assert abs(single["energy"] - res["energy"]) < 1e-12
        np.testing.assert_allclose(single["forces"], res["forces"], atol=1e-12)


def test_training_on_conservative_forces_supports_double_backward():
    pot = _potential(direct_forces=False)
    pot.model.differentiable_twice = True
    pot.train()
    graph = pot.build_graph(_structures())
    out = pot(graph)
    loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
    loss.backward()
    grads = [p.grad for p in pot.model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads[:5])
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


@pytest.mark.parametrize("direct_forces", [True, False])
def test_evaluate_returns_predict_outputs_as_float64_arrays(direct_forces):
    pot = _potential(direct_forces).eval()
    structures = _structures()
    graph = pot.build_graph(structures)
    modes = []
    hook = pot.model.register_forward_hook(
        lambda *a: modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
    )
    out = pot.compute(graph, stress=True)
    plain = pot.compute(graph)
    hook.remove()
    # inference_mode only when nothing needs autograd (direct forces, no stress); −dE/dx
    # switches autograd on inside no_grad
    assert modes[-1] == ((True, False) if direct_forces else (False, True))
    assert set(out) == {"energy", "forces", "stress"} and set(plain) == {"energy", "forces"}
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in out.values())
    singles = pot.predict(structures, stress=True)
    np.testing.assert_allclose(out["energy"], [r["energy"] for r in singles], atol=1e-12)
    np.testing.assert_allclose(out["forces"], np.concatenate([r["forces"] for r in singles]))
    np.testing.assert_allclose(out["stress"], np.stack([r["stress"] for r in singles]))


def test_force_targets_invert_what_the_potential_outputs():
    """Training targets for forces: conservative forces scale like energies (std, no mean);
    direct forces use the forces normaliser."""
    forces = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    assert torch.equal(_potential(direct_forces=False).force_targets(forces), forces / 2.0)
    direct = _potential(direct_forces=True)
    direct.normalizers["forces"] = {"mean": 0.0, "std": 4.0}
    assert torch.equal(direct.force_targets(forces), forces / 4.0)
