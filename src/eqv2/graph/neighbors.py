"""Radius graphs with periodic boundaries for one structure.

The graph follows the reference's ``radius_graph_pbc`` + ``get_max_neighbors_mask``:

* a pair (target i, source j, integer image shift S of j) is an edge when
  ``1e-4 < |d|² ≤ cutoff²`` with ``d = pos[j] - pos[i] + S @ cell``; the lower bound drops the
  atom's own zero-shift pair (and, as in the reference, any pair closer than 0.01 Å);
* an atom meets its own periodic images when a cell vector is shorter than the cutoff;
* non-periodic axes are open (shift 0 on them), so their cell vectors may be zero;
* with ``max_neighbors`` each *target* keeps its nearest sources.

The pair search is linear-scaling (vesin's cell list, which handles per-axis periodicity); we
then recompute every vector ourselves in float64 so the result does not depend on how the
backend rounds, and apply the cutoff, ordering and neighbour cap in vectorised numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from vesin import NeighborList as _VesinNeighborList

from eqv2.graph.cells import check_cell
from eqv2.graph.minimum_image import reduce_lattice

__all__ = ["NeighborList", "radius_graph", "SAME_ATOM_DISTANCE_SQ", "DEGENERACY_TOLERANCE_SQ"]

# The reference drops pairs whose squared distance is ≤ 1e-4 Å² (its "same atom" test).
SAME_ATOM_DISTANCE_SQ = 1e-4
# Non-strict cap slack. The reference adds it to the *squared* distance (Å²), despite calling it
# a distance tolerance, so we do the same.
DEGENERACY_TOLERANCE_SQ = 0.01
# vesin keeps pairs with d < cutoff while the reference keeps d ≤ cutoff: search slightly wider
# and apply the exact test on our own float64 vectors.
_SEARCH_PADDING = 1e-6
# Periodic rows whose orthogonality defect (product of lengths / volume) exceeds this are
# LLL-reduced before the search: a cell list over a very skewed cell visits ~defect² images.
_MAX_DEFECT = 2.0


class NeighborList(NamedTuple):
    """Edges of one structure; messages flow from source ``edge_index[0]`` to target ``[1]``.

    Attributes:
        edge_index: ``(2, E)`` int64, row 0 = source j, row 1 = target i.
        cell_offsets: ``(E, 3)`` int64 integer image shift applied to the source.
        edge_vec: ``(E, 3)`` float64, ``pos[j] - pos[i] + cell_offsets @ cell``.
        distance: ``(E,)`` float64, ``|edge_vec|``.
    """

    edge_index: np.ndarray
    cell_offsets: np.ndarray
    edge_vec: np.ndarray
    distance: np.ndarray


class PairList(NamedTuple):
    """All pairs within the cutoff except each atom's zero-shift self pair (unsorted)."""

    target: np.ndarray  # (P,) int64
    source: np.ndarray  # (P,) int64
    offsets: np.ndarray  # (P, 3) int64
    vec: np.ndarray  # (P, 3) float64
    dist_sq: np.ndarray  # (P,) float64


def pair_vectors(
    positions: np.ndarray,
    cell: np.ndarray,
    target: np.ndarray,
    source: np.ndarray,
    offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 edge vectors ``(pos[j] - pos[i]) + S @ cell`` and their squared lengths.

    The difference is taken before the shift is added so that a pair and its reverse give
    exactly opposite vectors and an atom's ±S self-images give exactly equal lengths: ties are
    then broken by our sort keys, not by rounding. The shift is written out per axis rather than
    as a matmul so that its rounding does not depend on the BLAS kernel.
    """
    shift = (
        offsets[:, 0:1] * cell[0] + offsets[:, 1:2] * cell[1] + offsets[:, 2:3] * cell[2]
    ).astype(np.float64, copy=False)
    vec = (positions[source] - positions[target]) + shift
    dist_sq = vec[:, 0] * vec[:, 0] + vec[:, 1] * vec[:, 1] + vec[:, 2] * vec[:, 2]
    return vec, dist_sq


def _search_box(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The box handed to vesin: periodic rows as given, open rows made harmless.

    Shifts along open axes are always zero, so their cell vectors never enter a result; but a
    zero or coplanar open row would make the box singular for the backend. We replace open rows
    by an orthonormal completion of the periodic ones.
    """
    n_periodic = int(pbc.sum())
    if n_periodic == 0:
        return np.zeros((3, 3))
    if n_periodic == 3:
        return cell
    periodic_rows = cell[pbc]
    # Right singular vectors beyond the rank of the periodic rows span their complement.
    _, _, vt = np.linalg.svd(periodic_rows)
    box = cell.copy()
    box[~pbc] = vt[n_periodic:]
    return box


def _reduced_cell(cell: np.ndarray, pbc: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A cell for the search with the same lattice, and ``T`` with ``search_cell = T @ cell``.

    Skewed periodic rows (defect above ``_MAX_DEFECT``) are LLL-reduced: ``T`` is then an
    integer unimodular matrix on the periodic axes (identity on open ones) and a search shift
    ``S'`` is the shift ``S' @ T`` of the given cell. ``T`` is ``None`` when nothing changed.
    """
    axes = np.flatnonzero(pbc)
    if len(axes) == 0:
        return cell, None
    rows = cell[axes]
    volume = np.sqrt(max(np.linalg.det(rows @ rows.T), 0.0))
    if np.prod(np.linalg.norm(rows, axis=1)) <= _MAX_DEFECT * volume:
        return cell, None
    u = np.rint(reduce_lattice(rows) @ np.linalg.pinv(rows))
    if abs(round(np.linalg.det(u))) != 1:  # rounding failed (cannot happen for sane cells)
        return cell, None
    transform = np.eye(3)
    transform[np.ix_(axes, axes)] = u
    reduced = cell.copy()
    reduced[axes] = u @ rows
    return reduced, transform.astype(np.int64)


def find_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> PairList:
    """Every (target, source, shift) with ``|d|² ≤ cutoff²``, minus zero-shift self pairs.

    Shifts are always in the given cell's basis, whatever basis the search used.
    """
    if len(positions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return PairList(empty, empty, np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0))
    search_cell, transform = _reduced_cell(cell, pbc)
    search = _VesinNeighborList(cutoff=float(cutoff) + _SEARCH_PADDING, full_list=True)
    # vesin's pair (i, j, S) has vector pos[j] - pos[i] + S @ box: i is our target, j our source.
    target, source, offsets = search.compute(
        positions, _search_box(search_cell, pbc), [bool(p) for p in pbc], quantities="ijS"
    )
    target = target.astype(np.int64, copy=False)
    source = source.astype(np.int64, copy=False)
    offsets = offsets.astype(np.int64, copy=False)
    if transform is not None:
        offsets = offsets @ transform
    vec, dist_sq = pair_vectors(positions, cell, target, source, offsets)
    keep = dist_sq <= cutoff * cutoff
    # vesin never returns the zero-shift self pair, but be explicit: it is not a neighbour.
    keep &= ~((target == source) & ~offsets.any(axis=1))
    return PairList(target[keep], source[keep], offsets[keep], vec[keep], dist_sq[keep])


def _sorted_order(pairs: PairList) -> np.ndarray:
    """Permutation sorting by target, squared distance, source, then shift (x, y, z)."""
    o = pairs.offsets
    # np.lexsort sorts by the last key first.
    return np.lexsort((o[:, 2], o[:, 1], o[:, 0], pairs.source, pairs.dist_sq, pairs.target))


def _cap_mask(
    target: np.ndarray, dist_sq: np.ndarray, n_atoms: int, max_neighbors: int, strict: bool
) -> np.ndarray:
    """Which edges survive the per-target neighbour cap. Edges must already be sorted.

    strict: the first ``max_neighbors`` per target in sort order.
    non-strict (the reference's rule): for a target with more than ``max_neighbors`` edges let
    ``t = dist_sq[k] + 0.01`` where ``k = max_neighbors`` is the 0-based rank of the nearest
    *excluded* edge; keep every edge with ``dist_sq ≤ t``. So the nearest excluded edge itself
    always comes back, plus anything within 0.01 Å² of it.
    """
    counts = np.bincount(target, minlength=n_atoms)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(target)) - starts[target]
    if strict:
        return rank < max_neighbors
    capped = counts > max_neighbors
    threshold = np.full(n_atoms, np.inf)
    threshold[capped] = dist_sq[starts[capped] + max_neighbors] + DEGENERACY_TOLERANCE_SQ
    return dist_sq <= threshold[target]


def select_edges(
    pairs: PairList,
    n_atoms: int,
    max_neighbors: int | None = None,
    strict: bool = True,
) -> NeighborList:
    """Drop near-zero pairs, sort deterministically and apply the neighbour cap."""
    pairs = PairList(*(a[pairs.dist_sq > SAME_ATOM_DISTANCE_SQ] for a in pairs))
    order = _sorted_order(pairs)  # once: inside the generator below it ran once per field
    pairs = PairList(*(a[order] for a in pairs))
    if max_neighbors is not None and len(pairs.target):
        keep = _cap_mask(pairs.target, pairs.dist_sq, n_atoms, max_neighbors, strict)
        pairs = PairList(*(a[keep] for a in pairs))
    return NeighborList(
        edge_index=np.stack([pairs.source, pairs.target]),
        cell_offsets=pairs.offsets,
        edge_vec=pairs.vec,
        distance=np.sqrt(pairs.dist_sq),
    )


def as_arrays(
    positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray | bool | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coerce inputs to ``(N,3)`` float64, ``(3,3)`` float64 and ``(3,)`` bool, checking shapes."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {positions.shape}.")
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise ValueError(f"cell must have shape (3, 3), got {cell.shape}.")
    pbc = np.broadcast_to(np.asarray(False if pbc is None else pbc, dtype=bool), (3,)).copy()
    return positions, cell, pbc


def check_graph_args(cutoff: float, max_neighbors: int | None) -> tuple[float, int | None]:
    """Reject cutoffs and caps that have no sensible meaning; return them as float and int."""
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive finite number of Å, got {cutoff!r}.")
    if max_neighbors is None:
        return float(cutoff), None
    if int(max_neighbors) != max_neighbors or max_neighbors < 1:
        raise ValueError(
            f"max_neighbors must be a positive integer, got {max_neighbors!r}; "
            "use None for no limit."
        )
    return float(cutoff), int(max_neighbors)


def radius_graph(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | bool | None,
    cutoff: float,
    max_neighbors: int | None = None,
    strict: bool = True,
) -> NeighborList:
    """Neighbour list of one structure within ``cutoff`` Å, with periodic images.

    Args:
        positions: ``(N, 3)`` Cartesian positions in Å (need not lie inside the cell).
        cell: ``(3, 3)`` lattice vectors as rows. Rows on open axes are ignored and may be zero;
            ``None`` means no cell (only allowed without periodicity).
        pbc: ``(3,)`` periodicity per axis (a single bool applies to all three).
        cutoff: pairs with ``distance ≤ cutoff`` are edges (pairs closer than 0.01 Å are not,
            which removes each atom's own zero-shift pair).
        max_neighbors: keep at most this many nearest sources per target; ``None``: no cap.
        strict: with a cap, keep exactly ``max_neighbors`` (ties broken by the sort order
            below). ``False`` follows the reference's tolerant rule: a capped target also keeps
            every edge whose squared distance is within 0.01 Å² of its nearest excluded edge's
            (that edge included).

    Returns:
        A :class:`NeighborList` sorted by target, then distance, then source, then shift.

    Raises:
        ValueError: bad shapes, non-finite positions or cell, a non-positive cutoff or cap, or
            a periodic axis whose cell vectors are zero or linearly dependent. (For the full
            checks with messages naming an ``ase.Atoms`` structure see ``validate_structure``.)
    """
    positions, cell, pbc = as_arrays(positions, cell, pbc)
    cutoff, max_neighbors = check_graph_args(cutoff, max_neighbors)
    if not np.isfinite(positions).all():
        raise ValueError("radius_graph input has non-finite positions; fix the coordinates.")
    check_cell(cell, pbc, label="radius_graph input")
    pairs = find_pairs(positions, cell, pbc, cutoff)
    return select_edges(pairs, len(positions), max_neighbors, strict)
