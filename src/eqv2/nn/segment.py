"""Scatter-style reductions over edges grouped by their target node (explicit sizes)."""

from __future__ import annotations

import torch

from eqv2.nn.precision import full_precision


@full_precision
def segment_softmax(
    logits: torch.Tensor,
    index: torch.Tensor,
    num_segments: int,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax of ``logits`` (E, ...) over the entries sharing the same ``index`` (E,).

    Without ``weight`` it matches the reference (torch_geometric's ``softmax``): the
    per-segment maximum is subtracted (and treated as a constant for autograd), and 1e-16 is
    added to each sum.

    With ``weight`` (E,) ≥ 0 (a cut-off envelope) it is the weighted softmax
    ``w_e exp(z_e) / Σ_k w_k exp(z_k)`` of EquiformerV3, computed as a softmax of
    ``z + log w``: the subtracted per-segment maximum includes ``log w``, so every exponent
    is ≤ 0 and nothing overflows or underflows to a wrong ratio even when the largest logit
    sits on an edge at the cut-off. Entries with ``w = 0`` get exactly 0 (and zero
    gradient), and a segment whose weights are all 0 gets all zeros, not NaN. ``log`` sees
    ``w`` clamped to the dtype's smallest normal number, so its gradient stays finite.

    Under autocast it runs in float32 (its output is float32).
    """
    shape = (num_segments, *logits.shape[1:])
    expanded = index.view(-1, *([1] * (logits.dim() - 1))).expand_as(logits)
    if weight is not None:
        weight = weight.to(logits.dtype).view(-1, *([1] * (logits.dim() - 1)))
        tiny = torch.finfo(logits.dtype).tiny
        logits = logits + weight.clamp_min(tiny).log()
    seg_max = torch.full(shape, float("-inf"), dtype=logits.dtype, device=logits.device)
    seg_max = seg_max.scatter_reduce(0, expanded, logits.detach(), "amax", include_self=False)
    out = (logits - seg_max.index_select(0, index)).exp()
    if weight is not None:
        out = torch.where(weight > 0, out, torch.zeros_like(out))
    seg_sum = torch.zeros(shape, dtype=logits.dtype, device=logits.device)
    seg_sum = seg_sum.index_add(0, index, out) + 1e-16
    return out / seg_sum.index_select(0, index)


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum of ``values`` (E, ...) into ``num_segments`` rows by ``index`` (E,)."""
    out = torch.zeros((num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)
