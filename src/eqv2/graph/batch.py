"""Batch :class:`~eqv2.graph.structure.Structure` records into one disjoint graph of tensors.

``ase.Atoms`` are accepted too and converted at this boundary (:func:`as_structure`).
"""

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
from eqv2.graph.structure import Structure
from eqv2.graph.validate import MIN_ATOM_DISTANCE, check_contacts, check_fields, structure_label

__all__ = ["as_structure", "batch_structures", "fixed_mask", "merge_graphs"]


def fixed_mask(atoms: Atoms | Structure, fix_tags: Sequence[int] = ()) -> np.ndarray:
    """Atoms frozen by ``FixAtoms`` constraints, plus those whose tag is in ``fix_tags``.

    Other constraint types do not fix whole atoms. ``fix_tags=(0,)`` adds OC20's fixed
    subsurface atoms when a file carries tags but no ``FixAtoms``. For a ``Structure`` the
    constraint part is its ``fixed`` field.
    """
    if isinstance(atoms, Structure):
        fixed = atoms.fixed.copy()
        tags = atoms.tags
    else:
        fixed = np.zeros(len(atoms), dtype=bool)
        for constraint in atoms.constraints:
            if isinstance(constraint, FixAtoms):
                fixed[constraint.index] = True
        tags = atoms.get_tags()
    if len(fix_tags):
        fixed |= np.isin(tags, list(fix_tags))
    return fixed


def as_structure(item: Structure | Atoms, index: int | None = None) -> Structure:
    """``item`` itself when it is a ``Structure``; an ``ase.Atoms`` converted for graph building.

    The conversion keeps what a graph needs (numbers, positions, cell, pbc, tags, ``FixAtoms``
    as ``fixed``, and ``info['name']`` for messages); labels are not read here (use
    ``eqv2.data.from_atoms`` for that).
    """
    if isinstance(item, Structure):
        return item
    if isinstance(item, Atoms):
        name = item.info.get("name")
        return Structure(
            numbers=item.numbers,
            positions=item.positions,
            cell=item.cell.array,
            pbc=item.pbc,
            tags=item.get_tags(),
            fixed=fixed_mask(item),
            info={} if name is None else {"name": name},
        )
    label = "Structure" if index is None else f"Structure {index}"
    raise ValueError(
        f"{label} is a {type(item).__name__}, not an eqv2 Structure or ase.Atoms. "
        "Read it with eqv2.data.read_structures (or ase.io.read)."
    )


def _graph(
    s: Structure,
    index: int,
    cutoff: float,
    max_neighbors: int | None,
    strict: bool,
    max_atomic_number: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, NeighborList]:
    """Validate one structure and build its graph with a single neighbour search."""
    label = structure_label(index, s)
    positions, cell, pbc = as_arrays(s.positions, s.cell, s.pbc)
    check_fields(s.numbers, positions, cell, pbc, label, max_atomic_number)
    if s.tags.shape != s.numbers.shape or s.fixed.shape != s.numbers.shape:
        raise ValueError(
            f"{label} has {len(s.numbers)} atoms but tags of shape {s.tags.shape} and fixed of "
            f"shape {s.fixed.shape}; both need one entry per atom."
        )
    # One search serves both the close-contact check and the graph. Should cutoff be below
    # MIN_ATOM_DISTANCE, the extra pairs are dropped anyway by the 0.01 Å same-atom rule.
    pairs = find_pairs(positions, cell, pbc, max(cutoff, MIN_ATOM_DISTANCE))
    check_contacts(pairs, label)
    return positions, cell, pbc, select_edges(pairs, len(positions), max_neighbors, strict)


def batch_structures(
    structures: Sequence[Structure | Atoms] | Structure | Atoms,
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
        structures: a list of :class:`~eqv2.graph.structure.Structure` records or
            ``ase.Atoms`` (mixed is fine), or a single one.
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
        ``edge_vec (E,3)`` (computed in float64, then cast), ``fixed (N,) bool`` (the record's
        ``fixed``; ``FixAtoms`` for ``ase.Atoms``), ``tags (N,) long``.
    """
    if isinstance(structures, (Atoms, Structure)):
        structures = [structures]
    if len(structures) == 0:
        raise ValueError("batch_structures got no structures; pass at least one Structure.")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype such as torch.float32, got {dtype}.")
    cutoff, max_neighbors = check_graph_args(cutoff, max_neighbors)

    records = [as_structure(s, i) for i, s in enumerate(structures, start=index_offset)]
    positions, cells, pbcs, graphs = [], [], [], []
    for index, s in enumerate(records, start=index_offset):
        pos, cell, pbc, graph = _graph(s, index, cutoff, max_neighbors, strict, max_atomic_number)
        positions.append(pos)
        cells.append(cell)
        pbcs.append(pbc)
        graphs.append(graph)

    natoms = np.array([len(s) for s in records], dtype=np.int64)
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
        "atomic_numbers": longs(np.concatenate([s.numbers for s in records])),
        "pos": floats(np.concatenate(positions)),
        "batch": longs(np.repeat(np.arange(len(records)), natoms)),
        "natoms": longs(natoms),
        "cell": floats(np.stack(cells)),
        "pbc": torch.from_numpy(np.stack(pbcs)).to(device),
        "edge_index": longs(edge_index),
        "cell_offsets": floats(np.concatenate([g.cell_offsets for g in graphs]).astype(np.float64)),
        "edge_vec": floats(np.concatenate([g.edge_vec for g in graphs])),
        "fixed": torch.from_numpy(np.concatenate([s.fixed for s in records])).to(device),
        "tags": longs(np.concatenate([s.tags for s in records])),
    }


#: Keys of a `batch_structures` graph with one row per atom, per structure and per edge.
_NODE_KEYS = ("atomic_numbers", "pos", "fixed", "tags")
_GRAPH_KEYS = ("natoms", "cell", "pbc")
_EDGE_KEYS = ("cell_offsets", "edge_vec")


def merge_graphs(graphs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Several `batch_structures` graphs as one, exactly as if their structures had been batched
    together (node indices of each graph's edges and its ``batch`` ids shifted)."""
    if not graphs:
        raise ValueError("merge_graphs got no graphs; pass at least one.")
    natoms = [int(g["pos"].shape[0]) for g in graphs]
    nstruct = [int(g["natoms"].shape[0]) for g in graphs]
    node_start = np.cumsum([0, *natoms[:-1]]).tolist()
    struct_start = np.cumsum([0, *nstruct[:-1]]).tolist()
    merged = {
        k: torch.cat([g[k] for g in graphs]) for k in (*_NODE_KEYS, *_GRAPH_KEYS, *_EDGE_KEYS)
    }
    merged["batch"] = torch.cat([g["batch"] + s for g, s in zip(graphs, struct_start, strict=True)])
    merged["edge_index"] = torch.cat(
        [g["edge_index"] + s for g, s in zip(graphs, node_start, strict=True)], dim=1
    )
    return {k: merged[k] for k in graphs[0]}  # batch_structures' key order
