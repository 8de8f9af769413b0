"""Differentiable edge vectors for gradient-based forces and stress."""

from __future__ import annotations

import torch

__all__ = ["edge_vectors"]


def edge_vectors(
    pos: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor,
    edge_index: torch.Tensor,
    cell_offsets: torch.Tensor,
) -> torch.Tensor:
    """Edge vectors ``pos[j] - pos[i] + cell_offsets @ cell[batch[j]]`` for edges ``j → i``.

    Recomputing the vectors from ``pos`` and ``cell`` (rather than using a stored ``edge_vec``)
    lets autograd reach both, which is what ``-dE/dpos`` forces and strain-derivative stress need.

    Args:
        pos: ``(N, 3)`` positions; the result has its dtype.
        cell: ``(B, 3, 3)`` lattice vectors as rows, per graph.
        batch: ``(N,)`` long, graph index of each node.
        edge_index: ``(2, E)`` long, row 0 = source j, row 1 = target i.
        cell_offsets: ``(E, 3)`` integer image shifts of the sources (any numeric dtype).

    Returns:
        ``(E, 3)`` tensor with the dtype and device of ``pos``.
    """
    source, target = edge_index[0], edge_index[1]
    edge_cell = cell.to(pos.dtype)[batch[source]]  # (E, 3, 3)
    # (E,1,3) @ (E,3,3): offsets are small integers, exact in any float dtype.
    shift = torch.bmm(cell_offsets.to(pos.dtype).unsqueeze(1), edge_cell).squeeze(1)
    return pos[source] - pos[target] + shift
