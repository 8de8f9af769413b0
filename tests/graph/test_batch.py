"""batch_structures: one disjoint graph with global indices; edge_vectors is differentiable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc111, molecule
from ase.constraints import FixAtoms

from eqv2.graph import (
    Structure,
    batch_structures,
    edge_vectors,
    from_atoms,
    merge_graphs,
    radius_graph,
)

CUTOFF = 4.0


def _structures() -> list[Atoms]:
    rng = np.random.default_rng(0)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)  # pbc T, T, F
    slab.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    slab.set_tags(np.arange(len(slab)) % 3)
    slab.rattle(0.05, seed=1)
    water = molecule("H2O")  # no pbc, zero cell
    bulk = Atoms(
        "NaCl",
        positions=[[0.0, 0.0, 0.0], [1.4, 1.5, 1.3]],
        cell=[[2.9, 0.0, 0.0], [1.1, 2.7, 0.0], [0.4, 0.6, 2.8]],  # triclinic, < cutoff
        pbc=True,
    )
    bulk.positions += rng.normal(scale=0.05, size=(2, 3))
    wire = Atoms("C3", positions=[[0, 0, 0], [0, 0, 1.3], [0.1, 0.2, 2.6]])
    wire.cell = [[0, 0, 0], [0, 0, 0], [0, 0, 3.9]]  # periodic along z only
    wire.pbc = [False, False, True]
    return [slab, water, bulk, wire]


def test_batch_is_the_union_of_per_structure_graphs():
    structures = _structures()
    b = batch_structures(structures, CUTOFF, max_neighbors=12, dtype=torch.float64)
    natoms = [len(a) for a in structures]
    assert b["natoms"].tolist() == natoms
    assert b["batch"].tolist() == [g for g, n in enumerate(natoms) for _ in range(n)]
    assert b["pbc"].tolist() == [list(a.pbc) for a in structures]
    start = 0
    first_edge = 0
    for g, atoms in enumerate(structures):
        ref = radius_graph(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF, 12)
        n_edges = ref.edge_index.shape[1]
        rows = slice(first_edge, first_edge + n_edges)
        np.testing.assert_array_equal(b["edge_index"][:, rows].numpy(), ref.edge_index + start)
        np.testing.assert_array_equal(b["cell_offsets"][rows].numpy(), ref.cell_offsets)
        np.testing.assert_array_equal(b["edge_vec"][rows].numpy(), ref.edge_vec)
        np.testing.assert_array_equal(b["cell"][g].numpy(), atoms.cell.array)
        start += len(atoms)
        first_edge += n_edges
    assert first_edge == b["edge_index"].shape[1]
    # Edges never cross structures.
    src_graph, tgt_graph = b["batch"][b["edge_index"]]
    assert torch.equal(src_graph, tgt_graph)


@pytest.mark.parametrize("split", [[1, 1, 1, 1], [2, 2], [1, 3], [4]])
def test_merged_graphs_equal_the_batch_of_their_structures(split):
    structures = _structures()
    whole = batch_structures(structures, CUTOFF, max_neighbors=12, dtype=torch.float64)
    parts, start = [], 0
    for n in split:
        parts.append(
            batch_structures(structures[start : start + n], CUTOFF, 12, dtype=torch.float64)
        )
        start += n
    merged = merge_graphs(parts)
    assert list(merged) == list(whole)
    for key, want in whole.items():
        assert merged[key].dtype == want.dtype and torch.equal(merged[key], want), key
    with pytest.raises(ValueError, match="at least one"):
        merge_graphs([])


def test_dtypes_fixed_and_tags():
    structures = _structures()
    b = batch_structures(structures, CUTOFF)
    for key in ("pos", "cell", "cell_offsets", "edge_vec"):
        assert b[key].dtype == torch.float32, key
    for key in ("atomic_numbers", "batch", "natoms", "edge_index", "tags"):
        assert b[key].dtype == torch.long, key
    assert b["pbc"].dtype == torch.bool and b["fixed"].dtype == torch.bool
    fixed = np.zeros(sum(len(a) for a in structures), dtype=bool)
    fixed[:4] = True
    np.testing.assert_array_equal(b["fixed"].numpy(), fixed)
    np.testing.assert_array_equal(
        b["tags"].numpy(), np.concatenate([a.get_tags() for a in structures])
    )
    # float32 vectors are the exact float64 vectors rounded once.
    exact = batch_structures(structures, CUTOFF, dtype=torch.float64)["edge_vec"]
    assert torch.equal(b["edge_vec"], exact.float())


def test_single_atoms_is_accepted():
    b = batch_structures(_structures()[2], CUTOFF)
    assert b["natoms"].tolist() == [2] and b["cell"].shape == (1, 3, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_vectors_match_and_differentiate(dtype):
    b = batch_structures(_structures(), CUTOFF, dtype=dtype)
    pos = b["pos"].clone().requires_grad_(True)
    cell = b["cell"].clone().requires_grad_(True)
    vec = edge_vectors(pos, cell, b["batch"], b["edge_index"], b["cell_offsets"])
    assert vec.dtype == dtype
    atol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(vec, b["edge_vec"], rtol=0, atol=atol)
    # d(sum |v|²)/dpos is the analytic 2 Σ (±v); the cell gets gradient only on periodic axes.
    vec.pow(2).sum().backward()
    src, tgt = b["edge_index"]
    expected = torch.zeros_like(pos).index_add_(0, src, 2 * vec).index_add_(0, tgt, -2 * vec)
    torch.testing.assert_close(pos.grad, expected.detach())
    assert cell.grad[1].abs().sum() == 0  # the molecule has no periodic images
    assert cell.grad[2].abs().sum() > 0
    assert cell.grad[0, 2].abs().sum() == 0  # slab: no shifts along its open axis


def test_structure_records_batch_like_their_atoms():
    atoms = _structures()
    records = [from_atoms(a) for a in atoms]
    by_atoms = batch_structures(atoms, cutoff=4.0, max_neighbors=12)
    by_records = batch_structures(records, cutoff=4.0, max_neighbors=12)
    mixed = batch_structures([records[0], *atoms[1:]], cutoff=4.0, max_neighbors=12)
    assert by_atoms.keys() == by_records.keys()
    for key, value in by_atoms.items():
        assert torch.equal(value, by_records[key]), key
        assert torch.equal(value, mixed[key]), key
    # the record's own fixed flags are what the batch uses
    records[0].fixed[:] = True
    assert batch_structures(records[0], cutoff=4.0)["fixed"].all()
    with pytest.raises(ValueError, match=r"Structure 4 \('x'\) has atoms 0 and 1"):
        bad = Structure(numbers=[1, 1], positions=np.zeros((2, 3)), info={"name": "x"})
        batch_structures([bad], cutoff=4.0, index_offset=4)
