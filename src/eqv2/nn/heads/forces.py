"""Direct force heads: one more attention block with one output channel, read at l=1."""

from __future__ import annotations

from typing import Any

import torch

from eqv2.nn.attention import GraphAttention
from eqv2.nn.heads.inputs import HeadInputs


class ForceHead(GraphAttention):
    """Forces (N, 3) = the l=1 coefficients of an attention block's single output channel.

    In e3nn's real basis the three l=1 coefficients are already (x, y, z). Parameters are the
    attention block's own, as in fairchem's ``force_block``.
    """

    def __init__(self, *attention_args: Any, output_name: str = "forces", **kwargs: Any) -> None:
        super().__init__(*attention_args, **kwargs)
        self.output_name = output_name

    def forward(self, x: torch.Tensor, inputs: HeadInputs) -> dict[str, torch.Tensor]:  # type: ignore[override]
        out = super().forward(x, inputs.edges, inputs.grids)
        return {self.output_name: out[:, 1:4, 0].to(x.dtype)}


class DeNSForceHead(ForceHead):
    """fairchem's ``DeNSVectorHead``: the force block plus a ``denoising_pos_block``.

    The denoising block predicts the noise added to positions during DeNS training
    (`denoise`). Without a denoising batch the reference returns
    ``0 · denoising_pos_block(x) + forces``, so `forward` does not evaluate it (identical for
    finite outputs).
    """

    def __init__(self, *attention_args: Any, output_name: str = "forces", **kwargs: Any) -> None:
        super().__init__(*attention_args, output_name=output_name, **kwargs)
        self.denoising_pos_block = GraphAttention(*attention_args, **kwargs)

    def denoise(self, x: torch.Tensor, inputs: HeadInputs) -> torch.Tensor:
        """The predicted position noise (N, 3) of a corrupted batch (normalised units)."""
        out = self.denoising_pos_block(x, inputs.edges, inputs.grids)
        return out[:, 1:4, 0].to(x.dtype)
