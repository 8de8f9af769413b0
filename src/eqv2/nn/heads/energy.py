"""Energy head: a feed-forward network to one channel, its l=0 part summed per structure."""

from __future__ import annotations

import torch

from eqv2.nn.feed_forward import FeedForward
from eqv2.nn.heads.inputs import HeadInputs, per_structure

REDUCTIONS = ("sum", "mean")


class EnergyHead(FeedForward):
    """``E = Σ_atoms FFN(x)[l=0] / avg_num_nodes`` (``reduce="sum"``) or the mean over atoms.

    The parameters are the feed-forward network's own (``so3_linear_1.*``, ...), as in
    fairchem's ``energy_block`` / ``scalar_block``.
    """

    def __init__(
        self,
        sphere_channels: int,
        hidden_channels: int,
        lmax: int,
        avg_num_nodes: float,
        reduce: str = "sum",
        output_name: str = "energy",
        **ffn_options: bool,
    ) -> None:
        super().__init__(sphere_channels, hidden_channels, 1, lmax, **ffn_options)
        if reduce not in REDUCTIONS:
            raise ValueError(f"energy head reduce={reduce!r}: choose one of {REDUCTIONS}.")
        self.avg_num_nodes = float(avg_num_nodes)
        self.reduce = reduce
        self.output_name = output_name

    def forward(self, x: torch.Tensor, inputs: HeadInputs) -> dict[str, torch.Tensor]:  # type: ignore[override]
        node = super().forward(x, inputs.grids)[:, 0, 0].to(x.dtype)
        energy = per_structure(node, inputs, self.reduce)
        if self.reduce == "sum":
            energy = energy / self.avg_num_nodes
        return {self.output_name: energy}
