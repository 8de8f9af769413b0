"""Bad input through the user-facing path (``Potential.predict``, ``eqv2.load_model``).

Every error must be a ``ValueError`` (subclass) whose message names the structure (index and
``atoms.info["name"]``) or the key at fault, and says how to fix it. (A malicious pickle is
covered by ``test_checkpoint.py``.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import Atoms

import eqv2
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from tests.tiny import TINY_MODEL, tiny_model

MAX_NUM_ELEMENTS = 20
#: the shared tiny model with a wider feed-forward, the automatic grid and elements Z < 20
VARIANT = dict(
    ffn_hidden_channels=16,
    grid_resolution=None,
    max_radius=5.0,
    max_neighbors=20,
    max_num_elements=MAX_NUM_ELEMENTS,
)
TINY = {**TINY_MODEL, **VARIANT}


@pytest.fixture(scope="module")
def potential() -> Potential:
    return Potential(tiny_model(**VARIANT)).eval()


def water(name: str | None = None) -> Atoms:
    atoms = Atoms("H2O", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    if name is not None:
        atoms.info["name"] = name
    return atoms


def crystal(name: str | None = None) -> Atoms:
    atoms = Atoms(
        "NaCl",
        scaled_positions=[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]],
        cell=[[0.0, 2.82, 2.82], [2.82, 0.0, 2.82], [2.82, 2.82, 0.0]],
        pbc=True,
    )
    if name is not None:
        atoms.info["name"] = name
    return atoms


def predict_error(potential: Potential, structures, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        potential.predict(structures, **kwargs)
    return str(info.value)


def test_good_input_works(potential):
    """The baseline the other tests perturb: it predicts without complaint."""
    out = potential.predict([water(), crystal(), water()])
    assert len(out) == 3
    assert all(np.isfinite(r["energy"]) and np.isfinite(r["forces"]).all() for r in out)


# -- structures -----------------------------------------------------------------------------------
def test_empty_structure(potential):
    empty = Atoms()
    empty.info["name"] = "nothing"
    msg = predict_error(potential, [water(), empty])
    assert "Structure 1 ('nothing')" in msg
    assert "no atoms" in msg
    assert "Remove it" in msg


@pytest.mark.parametrize("z", [0, -3, MAX_NUM_ELEMENTS, 118])
def test_atomic_number_outside_the_embedding(potential, z):
    """The embedding has max_num_elements rows, so Z must be in [1, max_num_elements - 1]."""
    bad = water("wet")
    bad.numbers[2] = z
    msg = predict_error(potential, [water(), bad])
    assert "Structure 1 ('wet')" in msg
    assert f"Z={z}" in msg
    assert "index 2" in msg
    assert f"[1, {MAX_NUM_ELEMENTS - 1}]" in msg
    assert "Fix the species" in msg or "use a model trained on this element" in msg


def test_largest_atomic_number_is_accepted(potential):
    ok = water()
    ok.numbers[2] = MAX_NUM_ELEMENTS - 1
    assert np.isfinite(potential.predict(ok)["energy"])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_position(potential, value):
    bad = crystal("salt")
    bad.positions[1, 2] = value
    msg = predict_error(potential, [water(), water(), bad])
    assert "Structure 2 ('salt')" in msg
    assert "non-finite position" in msg
    assert "atom index 1" in msg
    assert "Fix the coordinates" in msg


def test_non_finite_cell(potential):
    bad = crystal("salt")
    cell = bad.cell.array.copy()
    cell[0, 1] = np.nan
    bad.set_cell(cell, scale_atoms=False)
    msg = predict_error(potential, [bad])
    assert "Structure 0 ('salt')" in msg
    assert "non-finite cell" in msg
    assert "cell[0, 1]" in msg


def test_singular_cell_with_pbc(potential):
    bad = crystal("flat")
    bad.set_cell([[2.82, 0.0, 0.0], [5.64, 0.0, 0.0], [0.0, 0.0, 4.0]], scale_atoms=False)
    msg = predict_error(potential, [water(), bad])
    assert "Structure 1 ('flat')" in msg
    assert "singular cell" in msg
    assert "linearly dependent" in msg
    assert "set pbc=False" in msg


def test_zero_cell_vector_on_a_periodic_axis(potential):
    bad = water("box")
    bad.set_cell([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]])
    bad.pbc = [True, True, True]
    msg = predict_error(potential, [bad])
    assert "Structure 0 ('box')" in msg
    assert "periodic along c" in msg
    assert "zero length" in msg
    assert "set pbc=False on axis 2" in msg


def test_singular_cell_without_pbc_is_fine(potential):
    """A molecule with ase's default zero cell and pbc=False is not an error."""
    assert np.isfinite(potential.predict(water())["energy"])


def test_atoms_closer_than_1e_3_angstrom(potential):
    bad = water("dup")
    bad.positions[2] = bad.positions[0] + [5e-4, 0.0, 0.0]
    msg = predict_error(potential, [water(), bad])
    assert "Structure 1 ('dup')" in msg
    assert "atoms 2 and 0" in msg or "atoms 0 and 2" in msg
    assert "0.0005 Å apart" in msg
    assert "at least 0.001 Å" in msg
    assert "Remove the duplicated atom" in msg


def test_atom_on_a_periodic_image_of_another(potential):
    """Two atoms 1e-4 Å apart across the periodic boundary (not in the raw positions)."""
    bad = crystal("wrapped")
    a = bad.cell.array
    bad.positions[1] = bad.positions[0] + a[0] + [1e-4, 0.0, 0.0]
    msg = predict_error(potential, [bad])
    assert "Structure 0 ('wrapped')" in msg
    assert "periodic image" in msg
    assert "at least 0.001 Å" in msg


def test_unnamed_structure_is_named_by_index(potential):
    bad = water()
    bad.numbers[0] = 0
    msg = predict_error(potential, [water(), water(), water(), bad])
    assert msg.startswith("Structure 3 has an atom with Z=0")


def test_index_in_error_is_the_index_in_the_users_list(potential):
    bad = water()
    bad.numbers[0] = 0
    msg = predict_error(potential, [water(), water(), water(), bad], batch_size=2)
    assert msg.startswith("Structure 3 has an atom with Z=0"), msg


# -- weights and configs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_config_dict(small_fixture_dir) -> dict:
    return json.loads((small_fixture_dir / "config.json").read_text())["backbone_config"]


def load_error(state_dict, config) -> tuple[type, str]:
    with pytest.raises(ValueError) as info:
        eqv2.load_model(state_dict, config=config)
    return type(info.value), str(info.value)


def test_fixture_state_dict_loads(reference_state_dict, fixture_config_dict):
    """The baseline: the fixture's fairchem state dict with its config loads and predicts."""
    potential = eqv2.load_model(dict(reference_state_dict), config=fixture_config_dict)
    assert np.isfinite(potential.predict(water())["energy"])


def test_state_dict_with_missing_keys(reference_state_dict, fixture_config_dict):
    keys = [
        "backbone.blocks.0.ga.so2_conv_1.fc_m0.weight",
        "output_heads.forces.force_block.proj.bias",
    ]
    state = {k: v for k, v in reference_state_dict.items() if k not in keys}
    _, msg = load_error(state, fixture_config_dict)
    assert "2 missing key(s)" in msg
    assert "blocks.0.ga.so2_conv_1.fc_m0.weight [224, 320]" in msg
    assert "force_block.proj.bias [1]" in msg
    assert "Fix:" in msg
    assert "different config" in msg


def test_state_dict_with_misshaped_keys(reference_state_dict, fixture_config_dict):
    key = "backbone.blocks.1.ffn.so3_linear_1.weight"
    state = dict(reference_state_dict)
    state[key] = state[key][:, :, :-1]
    _, msg = load_error(state, fixture_config_dict)
    assert "1 key(s) with the wrong shape" in msg
    assert "blocks.1.ffn.so3_linear_1.weight: weights [5, 64, 31], model [5, 64, 32]" in msg
    assert "Fix:" in msg


def test_state_dict_for_another_config(reference_state_dict, fixture_config_dict):
    """Weights trained with lmax=4 loaded into an lmax=3 model: every misfit listed."""
    _, msg = load_error(dict(reference_state_dict), {**fixture_config_dict, "lmax_list": [3]})
    assert "with the wrong shape" in msg
    assert "blocks.0.norm_1.affine_weight: weights [4, 32], model [3, 32]" in msg
    assert "lmax_list/mmax_list" in msg


def test_bare_state_dict_without_config(reference_state_dict):
    with pytest.raises(ValueError) as info:
        eqv2.load_model(dict(reference_state_dict))
    assert "pass config=" in str(info.value)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("sphere_channel", "sphere_channels"), ("num_layer", "num_layers"), ("colour", None)],
)
def test_unknown_config_key(reference_state_dict, fixture_config_dict, key, suggestion):
    config = {**fixture_config_dict, key: 7}
    _, msg = load_error(dict(reference_state_dict), config)
    assert f"Unknown EquiformerV2 config key {key!r}" in msg
    if suggestion is not None:
        assert f"Did you mean {suggestion!r}?" in msg
    assert "Remove it or fix its spelling" in msg


def test_unknown_config_key_in_a_fresh_model():
    with pytest.raises(ValueError, match=r"Unknown EquiformerV2 config key 'lmax'.*lmax_list"):
        EquiformerV2Config.from_dict({**TINY, "lmax": 4})
    with pytest.raises(ValueError, match="Unknown EquiformerV2 config key 'use_grid_mpl'"):
        EquiformerV2(use_grid_mpl=True)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (dict(norm_type="batch_norm"), "norm_type='batch_norm': choose one of"),
        (dict(lmax_list=[2], mmax_list=[3]), "need 0 <= mmax <= lmax"),
        (dict(grid_resolution=4), "grid_resolution=4 is too coarse for lmax=2"),
        (dict(weight_init="xavier"), "weight_init='xavier': choose one of"),
    ],
)
def test_invalid_config_value(overrides, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        EquiformerV2Config(**{**TINY, **overrides})
