"""`eqv2.load_model` on fairchem checkpoint files reproduces fairchem's OCPCalculator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import eqv2
from tests.model.reference_cases import atoms_of

FILES = ["legacy_oc20_monolithic", "fairchem1_hydra"]


@pytest.fixture(scope="module")
def structures(reference_npz):
    return [atoms_of(reference_npz, i) for i in range(4)]


def _expected(checkpoints_dir, name):
    return json.loads((checkpoints_dir / f"{name}.expected.json").read_text())


def _errors(results, energies, forces):
    d_e = [abs(r["energy"] - e) for r, e in zip(results, energies, strict=True)]
    d_f = [np.abs(r["forces"] - np.asarray(f)).max() for r, f in zip(results, forces, strict=True)]
    return np.array(d_e), np.array(d_f)


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("use_ema", [False, True])
def test_float32_matches_ocpcalculator(checkpoints_dir, structures, name, use_ema):
    exp = _expected(checkpoints_dir, name)
    model = eqv2.load_model(checkpoints_dir / f"{name}.pt", use_ema=use_ema)
    if use_ema:
        energies = exp["alternatives"]["energy_with_ema_weights"]
        forces = exp["alternatives"]["forces_with_ema_weights"]
    else:
        energies, forces = exp["energy"], exp["forces"]
    d_e, d_f = _errors(model.predict(structures), energies, forces)
    assert (d_e <= 1e-4 + 1e-6 * np.abs(energies)).all(), d_e
    assert (d_f <= 1e-5).all(), d_f


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("use_ema", [False, True])
def test_float64_matches_fairchem_float64(checkpoints_dir, structures, seed_spread, name, use_ema):
    """Tolerance: the checkpoint README's f64 bound plus 3x the measured effect of exact edge
    vectors (fairchem rounds cell offsets to float32), scaled by the force normaliser."""
    exp = _expected(checkpoints_dir, name)
    model = eqv2.load_model(checkpoints_dir / f"{name}.pt", use_ema=use_ema, dtype=torch.float64)
    alt = exp["alternatives"]
    suffix = "with_ema_weights_f64" if use_ema else "f64_same_weights"
    energies, forces = alt[f"energy_{suffix}"], alt[f"forces_{suffix}"]
    d_e, d_f = _errors(model.predict(structures), energies, forces)
    f_std = model.normalizers["forces"]["std"]
    e_std = model.normalizers["energy"]["std"]
    exact = seed_spread["structures"]
    tol_e = (
        1e-6
        + 1e-9 * np.abs(energies)
        + np.array([3 * s["f64_exact_edge_vec_dE"] * e_std for s in exact])
    )
    tol_f = 1e-7 + np.array([3 * s["f64_exact_edge_vec_dF"] * f_std for s in exact])
    assert (d_e <= tol_e).all(), (d_e, tol_e)
    assert (d_f <= tol_f).all(), (d_f, tol_f)


def test_ema_weights_are_distinguished(checkpoints_dir, structures):
    plain = eqv2.load_model(checkpoints_dir / "fairchem1_hydra.pt").predict(structures[:1])[0]
    ema = eqv2.load_model(checkpoints_dir / "fairchem1_hydra.pt", use_ema=True).predict(
        structures[:1]
    )[0]
    assert abs(plain["energy"] - ema["energy"]) > 1e-4


def test_state_dict_with_config(small_fixture_dir, reference_state_dict, reference_npz, structures):
    """A bare fairchem-layout state dict plus the fixture's config reproduces the raw model."""
    config = json.loads((small_fixture_dir / "config.json").read_text())["backbone_config"]
    model = eqv2.load_model(reference_state_dict, config=config, dtype=torch.float64)
    result = model.predict(structures[2])
    assert abs(result["energy"] - reference_npz["s2_energy"][0]) < 1e-10  # frames differ
    np.testing.assert_allclose(result["forces"], reference_npz["s2_forces"], atol=1e-10, rtol=0)


def test_eqv2_checkpoint_round_trip(tmp_path, checkpoints_dir, structures):
    model = eqv2.load_model(checkpoints_dir / "fairchem1_hydra.pt", dtype=torch.float64)
    path = eqv2.save_model(model, tmp_path / "model.pt")
    again = eqv2.load_model(path, dtype=torch.float64)
    a, b = model.predict(structures), again.predict(structures)
    for x, y in zip(a, b, strict=True):
        assert x["energy"] == y["energy"]
        np.testing.assert_array_equal(x["forces"], y["forces"])


def test_fairchem_export_round_trip(tmp_path, checkpoints_dir, structures):
    model = eqv2.load_model(checkpoints_dir / "legacy_oc20_monolithic.pt", dtype=torch.float64)
    path = eqv2.export_fairchem(model, tmp_path / "exported.pt")
    again = eqv2.load_model(path, dtype=torch.float64)
    x, y = model.predict(structures[0]), again.predict(structures[0])
    assert x["energy"] == y["energy"]
    np.testing.assert_array_equal(x["forces"], y["forces"])


def test_wrong_config_names_the_keys(reference_state_dict, small_fixture_dir):
    config = json.loads((small_fixture_dir / "config.json").read_text())["backbone_config"]
    config["sphere_channels"] = 16
    with pytest.raises(ValueError, match="sphere_embedding.weight"):
        eqv2.load_model(reference_state_dict, config=config)


def test_unknown_config_key(reference_state_dict, small_fixture_dir):
    config = json.loads((small_fixture_dir / "config.json").read_text())["backbone_config"]
    config["num_layer"] = 2
    with pytest.raises(ValueError, match="num_layer.*num_layers"):
        eqv2.load_model(reference_state_dict, config=config)
