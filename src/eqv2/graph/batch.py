"""Batch ``ase.Atoms`` structures into one disjoint graph of named tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms

from eqv2.graph.neighbors import (
    NeighborList,
    as_arrays,
    check_graph_args,
    find_pairs,
    select_edges,
)
from eqv2.graph.validate import MIN_ATOM_DISTANCE, check_contacts, check_fields, structure_label

__all__ = ["batch_structures"]


def fixed_mask(atoms: Atoms, fix_tags: Sequence[int] = ()) -> np.ndarray:
    """Atoms frozen by ``FixAtoms`` constraints, plus those whose tag is in ``fix_tags``.

    Other constraint types do not fix whole atoms. ``fix_tags=(0,)`` adds OC20's fixed
    subsurface atoms when a file carries tags but no ``FixAtoms``.
    """
    fixed = np.zeros(len(atoms), dtype=bool)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            fixed[constraint.index] = True
    if len(fix_tags):
        fixed |= np.isin(atoms.get_tags(), list(fix_tags))
    return fixed


def _graph(
    atoms: Atoms,
    index: int,
    cutoff: float,
    max_neighbors: int | None,
    strict: bool,
    max_atomic_number: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, NeighborList]:
    """Validate one structure and build its graph with a single neighbour search."""
    label = structure_label(index, atoms)
    positions, cell, pbc = as_arrays(atoms.positions, atoms.cell.array, atoms.pbc)
    check_fields(atoms.numbers, positions, cell, pbc, label, max_atomic_number)
    # One search serves both the close-contact check and the graph. Should cutoff be below
    # MIN_ATOM_DISTANCE, the extra pairs are dropped anyway by the 0.01 Å same-atom rule.
    pairs = find_pairs(positions, cell, pbc, max(cutoff, MIN_ATOM_DISTANCE))
    check_contacts(pairs, label)
    return positions, cell, pbc, select_edges(pairs, len(positions), max_neighbors, strict)


def batch_structures(
    structures: Sequence[Atoms] | Atoms,
    cutoff: float,
    max_neighbors: int | None = None,
    strict: bool = True,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    max_atomic_number: int | None = None,
    index_offset: int = 0,
) -> dict[str, torch.Tensor]:
    """Validate structures, build their radius graphs and merge them into one batch.

    Each structure is checked (see :func:`eqv2.graph.validate_structure`; errors name its index
    in ``structures``), gets its own graph (see :func:`eqv2.graph.radius_graph`; periodicity may
    differ between structures), and node indices are shifted so the batch is one disjoint graph.

    Args:
        structures: a list of ``ase.Atoms`` or a single one.
        cutoff: radius in Å.
        max_neighbors: cap on sources per target (``None``: no cap).
        strict: exact cap (``True``) or the reference's tolerant rule (``False``).
        dtype: floating dtype of ``pos``, ``cell``, ``cell_offsets`` and ``edge_vec``.
        device: where the tensors go.
        max_atomic_number: largest allowed Z (``None``: no upper bound).
        index_offset: added to structure indices in error messages, when ``structures`` is a
            slice of the user's list (batched prediction).

    Returns:
        ``atomic_numbers (N,) long``, ``pos (N,3)``, ``batch (N,) long``, ``natoms (B,) long``,
        ``cell (B,3,3)``, ``pbc (B,3) bool``, ``edge_index (2,E) long`` (row 0 source j, row 1
        target i, global node indices), ``cell_offsets (E,3)`` (integers stored in ``dtype``),
        ``edge_vec (E,3)`` (computed in float64, then cast), ``fixed (N,) bool`` (``FixAtoms``),
        ``tags (N,) long``.
    """
    if isinstance(structures, Atoms):
        structures = [structures]
    if len(structures) == 0:
        raise ValueError("batch_structures got no structures; pass at least one ase.Atoms.")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype such as torch.float32, got {dtype}.")
    cutoff, max_neighbors = check_graph_args(cutoff, max_neighbors)

    positions, cells, pbcs, graphs = [], [], [], []
    for index, atoms in enumerate(structures, start=index_offset):
        if not isinstance(atoms, Atoms):
            raise ValueError(
                f"Structure {index} is a {type(atoms).__name__}, not an ase.Atoms. "
                "Convert it with ase.io.read or ase.Atoms(...)."
            )
        pos, cell, pbc, graph = _graph(
            atoms, index, cutoff, max_neighbors, strict, max_atomic_number
        )
        positions.append(pos)
        cells.append(cell)
        pbcs.append(pbc)
        graphs.append(graph)

    natoms = np.array([len(a) for a in structures], dtype=np.int64)
    node_offset = np.cumsum(natoms) - natoms
    n_edges = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
    # Local → global node indices: shift each structure's edges by its first node's index.
    edge_index = np.concatenate([g.edge_index for g in graphs], axis=1)
    edge_index = edge_index + np.repeat(node_offset, n_edges)

    def floats(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device=device, dtype=dtype)

    def longs(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)

    return {
        "atomic_numbers": longs(np.concatenate([a.numbers for a in structures])),
        "pos": floats(np.concatenate(positions)),
        "batch": longs(np.repeat(np.arange(len(structures)), natoms)),
        "natoms": longs(natoms),
        "cell": floats(np.stack(cells)),
        "pbc": torch.from_numpy(np.stack(pbcs)).to(device),
        "edge_index": longs(edge_index),
        "cell_offsets": floats(np.concatenate([g.cell_offsets for g in graphs]).astype(np.float64)),
        "edge_vec": floats(np.concatenate([g.edge_vec for g in graphs])),
        "fixed": torch.from_numpy(np.concatenate([fixed_mask(a) for a in structures])).to(device),
        "tags": longs(np.concatenate([a.get_tags() for a in structures])),
    }
