"""Symmetry acceptance tests of the whole model, in float64 with deterministic edge frames.

* Rotations: energies invariant, forces rotating with the structure (positions AND cell rotated,
  pbc kept). The error is not zero: the S2 activations and the grid MLP sample functions on a
  finite sphere grid, which aliases (``docs/equivariance.md``). The bound is the reference's own
  error with the same weights (``seed_spread.json``: ``rotation_equivariance_dE/dF``).
* Translations (including across periodic boundaries, with wrapping) and permutations of the
  atoms within a structure: exact up to float64 rounding (1e-10).
* A 2×2×1 supercell of a periodic structure: 4× the energy and the tiled forces, once we have
  checked that every atom sees the same neighbours (distances) in the supercell as in its cell.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqv2.graph import batch_structures
from eqv2.model import EquiformerV2
from tests.model.reference_cases import atoms_of, fixture_config, fixture_model

STRUCTURES = [0, 1, 2, 3]  # cu111_oh_slab, cu_fcc_bulk_2x2x2, ethanol_molecule, nacl_triclinic
EXACT = 1e-10  # translations, permutations, supercells: float64 rounding only
# The reference measured one rotation per structure; other rotations alias differently. Measured
# side by side on 20 random rotations (benchmarks/measure_equivariance.py), the reference and
# eqv2 have the same worst errors (2.0e-8 / 7.3e-6); over 100 rotations eqv2's worst is 3.1× (dE)
# and 1.6× (dF) the reference's worst single-rotation figures (docs/equivariance.md). The factor
# leaves headroom over that while staying far below what a real equivariance bug gives (a wrong
# Wigner block or frame shows as errors of the size of the forces, ~1e-2).
RANDOM_ROTATION_FACTOR = 5.0


# -- helpers --------------------------------------------------------------------------------------
def rotation_from_quaternion(q: np.ndarray) -> np.ndarray:
    """The proper rotation matrix (det +1) of a (not necessarily unit) quaternion (w, x, y, z)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotated(atoms: Atoms, R: np.ndarray, cell_dtype=np.float64) -> Atoms:
    """``atoms`` with positions and cell rows rotated by R (pbc kept)."""
    out = atoms.copy()
    out.positions = atoms.positions @ R.T
    out.set_cell((atoms.cell.array @ R.T).astype(cell_dtype).astype(np.float64))
    return out


def predict(model: EquiformerV2, structures: list[Atoms]):
    """Energies (B,) and forces (N, 3) of ``structures`` as float64 numpy arrays."""
    c = model.config
    graph = batch_structures(
        structures,
        cutoff=c.max_radius,
        max_neighbors=c.max_neighbors,
        strict=c.enforce_max_neighbors_strictly,
        dtype=torch.float64,
    )
    with torch.no_grad():
        out = model(graph)
    return out["energy"].numpy(), out["forces"].numpy()


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def structures(reference_npz) -> list[Atoms]:
    return [atoms_of(reference_npz, i) for i in STRUCTURES]


@pytest.fixture(scope="module")
def fixture_weights_model(small_fixture_dir, reference_state_dict) -> EquiformerV2:
    return fixture_model(small_fixture_dir, reference_state_dict, torch.float64)


@pytest.fixture(scope="module")
def random_weights_model(small_fixture_dir) -> EquiformerV2:
    """The fixture's architecture with fairchem's initialisation (seeded), not trained weights."""
    torch.manual_seed(1234)
    return EquiformerV2(fixture_config(small_fixture_dir)).to(torch.float64).eval()


@pytest.fixture(scope="module")
def fixture_outputs(fixture_weights_model, structures):
    return predict(fixture_weights_model, structures)


@pytest.fixture(scope="module", params=["fixture_weights", "random_weights"])
def model_and_outputs(request, structures, fixture_outputs):
    if request.param == "fixture_weights":
        return request.getfixturevalue("fixture_weights_model"), fixture_outputs
    model = request.getfixturevalue("random_weights_model")
    return model, predict(model, structures)


@pytest.fixture(scope="module")
def reference_bounds(seed_spread) -> tuple[float, float]:
    worst = seed_spread["max_over_structures"]
    return worst["rotation_equivariance_dE"], worst["rotation_equivariance_dF"]


# -- rotations ------------------------------------------------------------------------------------
def test_reference_rotations_no_worse_than_reference(
    fixture_weights_model, structures, fixture_outputs, seed_spread
):
    """The rotations the reference was measured with (make_fixture.py: scipy's
    ``Rotation.random(random_state=100 + i)`` for structure i, the rotated cell rounded to
    float32 as fairchem stores it): per structure, eqv2's error is at most the reference's, plus
    the reference's own float32 cell-offset rounding (``f64_exact_edge_vec_*``, 3× its largest
    value, as in the parity tests), which enters the reference's rotated run but not ours, and
    10× the reference's frame-roll seed spread."""
    from scipy.spatial.transform import Rotation

    Rs = [Rotation.random(random_state=100 + i).as_matrix() for i in STRUCTURES]
    e0, f0 = fixture_outputs
    e1, f1 = predict(
        fixture_weights_model,
        [rotated(a, R, cell_dtype=np.float32) for a, R in zip(structures, Rs, strict=True)],
    )
    rows = seed_spread["structures"]
    slack_e = 3 * max(r["f64_exact_edge_vec_dE"] for r in rows)
    slack_f = 3 * max(r["f64_exact_edge_vec_dF"] for r in rows)
    starts = np.cumsum([0] + [len(a) for a in structures])
    for i, R in zip(STRUCTURES, Rs, strict=True):
        ref = rows[i]
        atoms = slice(starts[i], starts[i + 1])
        de = abs(e1[i] - e0[i])
        df = max_abs(f1[atoms], f0[atoms] @ R.T)
        assert de <= ref["rotation_equivariance_dE"] + slack_e + 10 * ref["f64_seed_spread_dE"]
        assert df <= ref["rotation_equivariance_dF"] + slack_f + 10 * ref["f64_seed_spread_dF"]


quaternions = st.lists(
    st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False), min_size=4, max_size=4
).filter(lambda q: np.linalg.norm(q) > 0.1)


@settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(q=quaternions)
def test_random_rotations(model_and_outputs, structures, reference_bounds, q):
    """Any rotation, all four structures in one batch, fixture weights and random weights:
    within RANDOM_ROTATION_FACTOR × the reference's worst error with the fixture weights (random
    weights of the same architecture give outputs, and aliasing errors, of the same size)."""
    model, (e0, f0) = model_and_outputs
    R = rotation_from_quaternion(np.asarray(q))
    e1, f1 = predict(model, [rotated(a, R) for a in structures])
    ref_de, ref_df = reference_bounds
    assert max_abs(e1, e0) <= RANDOM_ROTATION_FACTOR * ref_de
    assert max_abs(f1, f0 @ R.T) <= RANDOM_ROTATION_FACTOR * ref_df


def test_rotation_keeps_the_graph(structures, small_fixture_dir):
    """A proper rotation of positions and cell gives the same edges and rotated edge vectors
    (the premise of the rotation tests: a changed graph would be a different input)."""
    c = fixture_config(small_fixture_dir)
    R = rotation_from_quaternion(np.array([0.3, -0.5, 0.7, 0.2]))
    for atoms in structures:
        kwargs = dict(cutoff=c.max_radius, max_neighbors=c.max_neighbors, dtype=torch.float64)
        a = batch_structures([atoms], **kwargs)
        b = batch_structures([rotated(atoms, R)], **kwargs)
        assert torch.equal(a["edge_index"], b["edge_index"])
        assert torch.equal(a["cell_offsets"], b["cell_offsets"])
        np.testing.assert_allclose(
            b["edge_vec"].numpy(), a["edge_vec"].numpy() @ R.T, rtol=0, atol=1e-12
        )


# -- translations and permutations ----------------------------------------------------------------
def test_translation_invariance_with_wrapping(fixture_weights_model, structures, fixture_outputs):
    """Translate every structure; periodic ones are wrapped back into their cell, so atoms cross
    the periodic boundaries and edges get other image offsets: outputs unchanged."""
    e0, f0 = fixture_outputs
    shift = np.array([13.1, 7.7, -9.4])
    moved = []
    crossed = 0
    for atoms in structures:
        b = atoms.copy()
        b.positions = atoms.positions + shift
        if atoms.pbc.any():
            before = b.get_scaled_positions(wrap=False)
            b.wrap()
            crossed += int(np.any(np.floor(before[:, atoms.pbc]) != 0))
        moved.append(b)
    assert crossed == 3  # the slab and both bulks: the test does cross boundaries
    e1, f1 = predict(fixture_weights_model, moved)
    assert max_abs(e1, e0) <= EXACT
    assert max_abs(f1, f0) <= EXACT


def test_wrapping_alone_changes_nothing(fixture_weights_model, structures, fixture_outputs):
    """Atoms placed outside the cell (shifted by lattice vectors) give the same outputs as the
    wrapped structure."""
    e0, f0 = fixture_outputs
    rng = np.random.default_rng(7)
    moved = []
    for atoms in structures:
        b = atoms.copy()
        if atoms.pbc.any():
            n = rng.integers(-2, 3, size=(len(b), 3)) * atoms.pbc
            b.positions = atoms.positions + n @ atoms.cell.array
        moved.append(b)
    e1, f1 = predict(fixture_weights_model, moved)
    assert max_abs(e1, e0) <= EXACT
    assert max_abs(f1, f0) <= EXACT


def test_permutation_equivariance(fixture_weights_model, structures, fixture_outputs):
    """Shuffle the atoms inside every structure (and the order of the structures in the batch):
    energies unchanged, forces shuffled the same way."""
    model = fixture_weights_model
    e0, f0 = fixture_outputs
    rng = np.random.default_rng(3)
    order = [2, 0, 3, 1]
    perms = {i: rng.permutation(len(structures[i])) for i in order}
    e1, f1 = predict(model, [structures[i][perms[i]] for i in order])
    starts = np.cumsum([0] + [len(a) for a in structures])
    expected_f = np.concatenate([f0[starts[i] : starts[i + 1]][perms[i]] for i in order])
    assert max_abs(e1, e0[order]) <= EXACT
    assert max_abs(f1, expected_f) <= EXACT


# -- supercells -----------------------------------------------------------------------------------
def neighbour_distances(atoms: Atoms, cutoff: float, max_neighbors) -> list[np.ndarray]:
    """Sorted incoming edge lengths of every atom in the graph eqv2 builds."""
    g = batch_structures([atoms], cutoff=cutoff, max_neighbors=max_neighbors, dtype=torch.float64)
    target = g["edge_index"][1].numpy()
    length = g["edge_vec"].norm(dim=1).numpy()
    return [np.sort(length[target == i]) for i in range(len(atoms))]


def test_supercell_2x2x1(fixture_weights_model, structures, fixture_outputs):
    """A 2×2×1 supercell has 4× the energy of its cell and the cell's forces on every copy.

    With a neighbour cap the supercell could keep different neighbours than the cell when two
    candidates tie at the cap (the slab's closest call is 3.7e-4 Å, seed_spread.json), so the
    premise is checked first: every atom of the supercell has exactly the incoming edge lengths
    of its original in the cell.
    """
    atoms = structures[0]  # cu111_oh_slab, pbc (T, T, F): 2x2x1 tiles the periodic plane
    c = fixture_weights_model.config
    cap = c.max_neighbors  # the fixture's cap of 20: every atom of the slab is at the cap
    supercell = atoms * (2, 2, 1)
    n = len(atoms)
    cell_graph = neighbour_distances(atoms, c.max_radius, cap)
    super_graph = neighbour_distances(supercell, c.max_radius, cap)
    for k, lengths in enumerate(super_graph):
        np.testing.assert_allclose(lengths, cell_graph[k % n], rtol=0, atol=1e-9)

    e0, f0 = fixture_outputs
    e1, f1 = e0[:1], f0[:n]
    e4, f4 = predict(fixture_weights_model, [supercell])
    assert abs(e4[0] - 4 * e1[0]) <= 4 * EXACT
    assert max_abs(f4, np.tile(f1, (4, 1))) <= EXACT


def test_seed_spread_file_is_the_expected_one(small_fixture_dir):
    """Guard: the bounds above come from rows in the order of STRUCTURES."""
    rows = json.loads((small_fixture_dir / "seed_spread.json").read_text())["structures"]
    names = [r["name"] for r in rows]
    assert names == [
        "cu111_oh_slab",
        "cu_fcc_bulk_2x2x2",
        "ethanol_molecule",
        "nacl_triclinic_bulk",
    ]
