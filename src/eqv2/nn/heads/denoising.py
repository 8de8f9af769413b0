"""Node-level denoising head for Noisy Nodes: the noise added to each atom's position."""

from __future__ import annotations

from typing import Any

from eqv2.nn.heads.forces import ForceHead

__all__ = ["PositionDenoisingHead"]


class PositionDenoisingHead(ForceHead):
    """Predicted position noise (N, 3), in units of the noise std: one more equivariant
    graph-attention block with one output channel, read at l=1 (an equivariant vector).

    The EquiformerV2 paper trains Noisy Nodes with "one additional block of equivariant graph
    attention for the auxiliary task" (Appendix D.5, F.1); this is that block, built like the
    direct force head (and like the DeNS force head's ``denoising_pos_block``). Its output is
    ``{"denoising": (N, 3)}``; the model evaluates it only on corrupted training batches.
    """

    def __init__(self, *attention_args: Any, **kwargs: Any) -> None:
        super().__init__(*attention_args, output_name="denoising", **kwargs)
