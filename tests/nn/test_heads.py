"""Output heads as modules: rank-2 stress (decomposed and not), DeNS force encoding and heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from eqv2.model import EquiformerV2, Potential
from tests.tiny import TINY_WIDTHS, tiny_model

#: the shared tiny model with a longer cutoff, the separable norm and no dropout
VARIANT = dict(
    max_radius=4.0,
    max_neighbors=30,
    norm_type="layer_norm_sh",
    alpha_drop=0.0,
    drop_path_rate=0.0,
    max_num_elements=30,
)
ENERGY = {"module": "equiformer_v2_energy_head"}
FORCES = {"module": "equiformer_v2_force_head"}


def _stress_model(seed: int = 0, grid: int = 8, **stress) -> Potential:
    spec = {"module": "rank2_symmetric_head", **stress}
    heads = {"energy": ENERGY, "forces": FORCES, "stress": spec}
    model = tiny_model(seed=seed, **{**VARIANT, "grid_resolution": grid}, heads=heads)
    with torch.no_grad():  # non-trivial weights everywhere (the reference's init zeroes biases)
        for p in model.stress_head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return Potential(model).to(torch.float64).eval()


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _crystal():
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    atoms.rattle(0.1, seed=4)
    return atoms


def _rotated(atoms, rot):
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ rot.T)
    out.positions = atoms.positions @ rot.T
    return out


@pytest.mark.parametrize(
    "options",
    [
        {"decompose": True, "use_source_target_embedding": True},
        {"decompose": True, "edge_level_mlp": True},
        {"decompose": False, "use_source_target_embedding": True},
        {"decompose": False, "edge_level_mlp": True, "extensive": True},
    ],
)
def test_stress_head_is_symmetric_and_rotates_as_a_rank2_tensor(options):
    """Exactly equivariant with one bias-free Linear per MLP (the reference's SiLU between
    layers acts on each tensor component and its biases are added to each component, which
    the default head keeps: see the next test)."""
    # grid 32: exact S2 activations for lmax 2, so the backbone is equivariant to ~1e-11
    pot = _stress_model(num_mlp_layers=1, grid=32, **options)
    with torch.no_grad():
        for mlp in ("irrep2_MLP", "r2tensor_MLP"):
            for layer in getattr(pot.model.stress_head.block, mlp, []):
                layer.bias.zero_()
    atoms = _crystal()
    rot = _rotation(1)
    sigma = pot.predict(atoms, stress=True)["stress"]
    turned = pot.predict(_rotated(atoms, rot), stress=True)["stress"]
    np.testing.assert_allclose(turned, rot @ sigma @ rot.T, atol=1e-10)
    np.testing.assert_allclose(sigma, sigma.T, atol=1e-14)
    assert np.abs(sigma).max() > 1e-3


def test_reference_quirks_are_kept():
    """Default head (2-layer MLPs with biases): the isotropic part is invariant, the l=2 part
    is not rotated exactly (SiLU and biases per component), as in the reference."""
    pot = _stress_model(decompose=True, grid=32)
    atoms, rot = _crystal(), _rotation(2)
    sigma = pot.predict(atoms, stress=True)["stress"]
    turned = pot.predict(_rotated(atoms, rot), stress=True)["stress"]
    assert np.trace(turned) == pytest.approx(np.trace(sigma), abs=1e-10)
    assert np.abs(turned - rot @ sigma @ rot.T).max() > 1e-4


def test_stress_head_adds_parameters_under_reference_names():
    pot = _stress_model(decompose=True, use_source_target_embedding=True)
    names = {k for k in pot.model.state_dict() if k.startswith("stress_head.")}
    assert names == {
        "stress_head.sphharm_norm.norm_l0.weight",
        "stress_head.sphharm_norm.norm_l0.bias",
        "stress_head.sphharm_norm.affine_weight",
        "stress_head.xedge_layer_norm.weight",
        "stress_head.xedge_layer_norm.bias",
        *(
            f"stress_head.block.{m}.{i}.{p}"
            for m in ("scalar_MLP", "irrep2_MLP")
            for i in (0, 2)
            for p in ("weight", "bias")
        ),
    }
    width = pot.model.stress_head.block.scalar_MLP[0].in_features
    assert width == 2 * TINY_WIDTHS["sphere_channels"]


def _dens(**backbone) -> EquiformerV2:
    heads = {
        "energy": {"module": "DeNSScalarHead", "use_denoising": True},
        "forces": {"module": "DeNSVectorHead"},
    }
    model = tiny_model(seed=3, **VARIANT, backbone="dens", heads=heads, **backbone)
    return model.to(torch.float64).eval()


def test_dens_force_embedding_bias_reaches_every_node():
    model = _dens()
    pot = Potential(model)
    atoms = _crystal()
    before = pot.predict(atoms)
    with torch.no_grad():
        model.force_embedding.weight.add_(1.0)  # multiplies zeros at inference: no effect
    assert pot.predict(atoms)["energy"] == before["energy"]
    with torch.no_grad():
        # (a shift equal on all channels would cancel in the l=0 LayerNorms)
        model.force_embedding.bias.add_(torch.linspace(-0.5, 0.5, TINY_WIDTHS["sphere_channels"]))
    assert abs(pot.predict(atoms)["energy"] - before["energy"]) > 1e-6
    # the denoising block is loaded but not needed at inference
    assert "force_block.denoising_pos_block.alpha_dot" in model.state_dict()
    with torch.no_grad():
        model.force_block.denoising_pos_block.alpha_dot.add_(1.0)
    np.testing.assert_array_equal(pot.predict(atoms)["forces"], pot.predict(atoms)["forces"])


def test_dens_force_encoding_only_when_asked():
    model = _dens()
    pot = Potential(model)
    graph = pot.build_graph([_crystal()])
    with torch.no_grad():
        plain = model(graph)["energy"]
        zeros = model({**graph, "denoising_forces": torch.zeros_like(graph["pos"])})["energy"]
        forces = torch.randn_like(graph["pos"])
        encoded = model({**graph, "denoising_forces": forces})["energy"]
        off = _dens(use_force_encoding=False)
        ignored = off({**graph, "denoising_forces": forces})["energy"]
    assert torch.equal(plain, zeros)
    assert not torch.allclose(plain, encoded)
    assert torch.equal(off(graph)["energy"], ignored)
