"""Parity with fairchem-core 1.10's EquiformerV2 on the eqv2_small fixture (same weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eqv2.graph import batch_structures
from tests.model.reference_cases import (
    CASES,
    atoms_of,
    fixture_config,
    fixture_model,
    prefix,
    replay_graph,
    structure_indices,
)


@pytest.fixture(scope="module")
def model64(small_fixture_dir, reference_state_dict):
    return fixture_model(small_fixture_dir, reference_state_dict, torch.float64)


@pytest.fixture(scope="module")
def model32(small_fixture_dir, reference_state_dict):
    return fixture_model(small_fixture_dir, reference_state_dict, torch.float32)


@pytest.mark.parametrize("case", CASES)
def test_float64_replaying_reference_frames(model64, reference_npz, case):
    """Same graph, edge vectors and frames as the reference: agreement to 1e-10."""
    with torch.no_grad():
        out = model64(replay_graph(reference_npz, case))
    p = prefix(case)
    np.testing.assert_allclose(
        out["energy"].numpy(), reference_npz[p + "energy"], rtol=0, atol=1e-10
    )
    np.testing.assert_allclose(
        out["forces"].numpy(), reference_npz[p + "forces"], rtol=0, atol=1e-10
    )


@pytest.mark.parametrize("case", ["0", "1", "2", "3"])
def test_float32_replaying_reference_frames(model32, reference_npz, case):
    with torch.no_grad():
        out = model32(replay_graph(reference_npz, case, torch.float32))
    p = prefix(case)
    np.testing.assert_allclose(
        out["energy"].double().numpy(), reference_npz[p + "energy"], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        out["forces"].double().numpy(), reference_npz[p + "forces"], rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("case", CASES)
def test_float64_own_graph_and_deterministic_frames(
    model64, reference_npz, small_fixture_dir, seed_spread, case
):
    """eqv2's own graph, exact edge vectors and deterministic frames.

    Tolerance: 10× the reference's own seed spread plus 3× the measured effect of exact edge
    vectors (``seed_spread.json``), per structure.
    """
    cfg = fixture_config(small_fixture_dir)
    members = structure_indices(reference_npz, case)
    graph = batch_structures(
        [atoms_of(reference_npz, i) for i in members],
        cutoff=cfg.max_radius,
        max_neighbors=cfg.max_neighbors,
        strict=cfg.enforce_max_neighbors_strictly,
        dtype=torch.float64,
    )
    with torch.no_grad():
        out = model64(graph)
    p = prefix(case)
    per = [seed_spread["structures"][i] for i in members]
    tol_e = max(10 * s["f64_seed_spread_dE"] + 3 * s["f64_exact_edge_vec_dE"] for s in per)
    tol_f = max(10 * s["f64_seed_spread_dF"] + 3 * s["f64_exact_edge_vec_dF"] for s in per)
    if case == "batch":  # batching adds the reference's batched-vs-single spread
        tol_e += 10 * seed_spread["batch_vs_individual"]["dE"]
        tol_f += 10 * seed_spread["batch_vs_individual"]["dF"]
    dE = np.abs(out["energy"].numpy() - reference_npz[p + "energy"]).max()
    dF = np.abs(out["forces"].numpy() - reference_npz[p + "forces"]).max()
    assert dE <= tol_e, f"dE={dE:.3g} > {tol_e:.3g}"
    assert dF <= tol_f, f"dF={dF:.3g} > {tol_f:.3g}"


@pytest.mark.parametrize("case", ["0", "1", "2", "3"])
def test_float32_own_graph(model32, reference_npz, small_fixture_dir, case):
    cfg = fixture_config(small_fixture_dir)
    graph = batch_structures(
        [atoms_of(reference_npz, int(case))],
        cutoff=cfg.max_radius,
        max_neighbors=cfg.max_neighbors,
        dtype=torch.float32,
    )
    with torch.no_grad():
        out = model32(graph)
    p = prefix(case)
    np.testing.assert_allclose(
        out["energy"].double().numpy(), reference_npz[p + "energy"], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        out["forces"].double().numpy(), reference_npz[p + "forces"], rtol=0, atol=1e-5
    )
