"""Structures without edges (isolated atoms, atoms beyond the cut-off) predict from the node
path alone: no crash, zero direct forces, alone or batched with ordinary structures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

import eqv2
from eqv2.model import Potential
from tests.tiny import tiny_model

CUTOFF = dict(max_radius=4.5, max_neighbors=12, max_num_elements=30)


def _edgeless() -> list[Atoms]:
    return [
        Atoms("Cu", positions=[[0.0, 0.0, 0.0]]),  # one atom, no pbc
        Atoms("Cu2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]]),  # beyond the cut-off
        Atoms(
            "Cu", positions=[[1.0, 1.0, 1.0]], cell=np.eye(3) * 12.0, pbc=True
        ),  # own images too far
    ]


@pytest.mark.parametrize("direct_forces", [True, False])
def test_edgeless_structures_alone_and_in_a_batch(direct_forces):
    pot = Potential(tiny_model(**CUTOFF, direct_forces=direct_forces))
    pot = pot.to(torch.float64)
    single = pot.predict(_edgeless()[0])
    for result in pot.predict(_edgeless()):
        # node path only: every Cu atom contributes the same energy, forces vanish
        assert result["energy"] == pytest.approx(
            single["energy"] * len(result["forces"]), abs=1e-12
        )
        np.testing.assert_array_equal(result["forces"], 0.0)
    cu = bulk("Cu", "fcc", a=3.6)
    mixed = pot.predict([cu, *_edgeless()], batch_size=8)
    alone = [pot.predict(cu), *pot.predict(_edgeless())]
    for got, want in zip(mixed, alone, strict=True):
        assert got["energy"] == pytest.approx(want["energy"], abs=1e-12)
        np.testing.assert_allclose(got["forces"], want["forces"], atol=1e-12)
    graph = pot.build_graph(_edgeless())
    assert graph["edge_index"].shape == (2, 0)
    out = pot.compute(graph, stress=True)
    assert np.isfinite(out["energy"]).all() and np.isfinite(out["stress"]).all()


def test_stress_head_model_without_edges(checkpoints_dir):
    pot = eqv2.load_model(checkpoints_dir / "omat_stress_small.pt")
    results = pot.predict([*_edgeless(), bulk("Cu", "fcc", a=3.6)], stress=True)
    # the raw direct forces are zero; denormalised they are the file's force mean (0.0117 in
    # this fixture; fitted files store 0.0), exactly as fairchem's calculator would return
    mean = np.float32(pot.normalizers["forces"]["mean"])
    for result in results[:3]:
        assert np.isfinite(result["energy"]) and np.isfinite(result["stress"]).all()
        np.testing.assert_array_equal(result["forces"], mean)
    alone = pot.predict(bulk("Cu", "fcc", a=3.6), stress=True)
    np.testing.assert_allclose(results[3]["stress"], alone["stress"], atol=1e-7)
