"""What every output head receives besides the node features."""

from __future__ import annotations

from typing import NamedTuple

import torch

from eqv2.nn.context import EdgeContext, SphereGrids


class HeadInputs(NamedTuple):
    """Per-forward quantities shared by the heads (computed once by the model)."""

    edges: EdgeContext
    grids: SphereGrids
    edge_vec: torch.Tensor  #: (E, 3) source − target (+ periodic shift), Å
    natoms: torch.Tensor  #: (B,) atoms per structure


def per_structure(values: torch.Tensor, inputs: HeadInputs, reduce: str) -> torch.Tensor:
    """Sum (``"sum"``) or mean (``"mean"``) of per-atom ``values`` (N, ...) per structure."""
    edges = inputs.edges
    out = values.new_zeros((edges.num_graphs, *values.shape[1:]))
    out = out.index_add(0, edges.batch, values)
    if reduce == "mean":
        counts = inputs.natoms.to(values.dtype).clamp_min(1)
        out = out / counts.view(-1, *([1] * (values.dim() - 1)))
    return out
