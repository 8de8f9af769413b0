"""Scatter-style reductions over edges grouped by their target node (explicit sizes)."""

from __future__ import annotations

import torch

from eqv2.nn.precision import full_precision


@full_precision
def segment_softmax(logits: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` (E, ...) over the entries sharing the same ``index`` (E,).

    Matches the reference (torch_geometric's ``softmax``): the per-segment maximum is
    subtracted (and treated as a constant for autograd), and 1e-16 is added to each sum.
    Under autocast it runs in float32 (its output is float32).
    """
    shape = (num_segments, *logits.shape[1:])
    expanded = index.view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)
    seg_max = torch.full(shape, float("-inf"), dtype=logits.dtype, device=logits.device)
    seg_max = seg_max.scatter_reduce(0, expanded, logits.detach(), "amax", include_self=False)
    out = (logits - seg_max.index_select(0, index)).exp()
    seg_sum = torch.zeros(shape, dtype=logits.dtype, device=logits.device)
    seg_sum = seg_sum.index_add(0, index, out) + 1e-16
    return out / seg_sum.index_select(0, index)


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum of ``values`` (E, ...) into ``num_segments`` rows by ``index`` (E,)."""
    out = torch.zeros((num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)
