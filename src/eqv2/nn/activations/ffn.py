"""What a feed-forward network does between its two SO(3) linears, as a variant object.

An `FFNActivation` says how wide the first SO(3) linear's output is, which parameter modules
the network needs (``build``: registered on the network under the reference's names, such as
``gating_linear``, ``scalar_mlp``, ``grid_mlp``, so checkpoints keep their keys), and how they
are applied (``forward``). `PointwiseFFN` wraps any `SphereActivation`; `GridMLP` is
EquiformerV2's grid MLP.
"""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.activations.base import SphereActivation
from eqv2.nn.context import SphereGrids
from eqv2.nn.grid_mlp import grid_mlp
from eqv2.nn.precision import autocast_dtype


class FFNActivation(nn.Module):
    """Interface: ``h (N, S, hidden_in(H))`` → ``(N, S, H)``, reading the network's modules."""

    def hidden_in(self, hidden: int) -> int:
        """Output channels of the first SO(3) linear for ``hidden`` activated channels."""
        return hidden

    def build(self, in_channels: int, hidden: int) -> dict[str, nn.Module]:
        """Parameter modules the network registers under these names (in this order)."""
        return {}

    def forward(
        self, ffn: nn.Module, x: torch.Tensor, h: torch.Tensor, grids: SphereGrids
    ) -> torch.Tensor:
        """``x``: the network's input (N, S, C) (its l = 0 row feeds scalar branches)."""
        raise NotImplementedError


class PointwiseFFN(FFNActivation):
    """A sphere activation whose scalars come from ``gating_linear(x[l=0])``."""

    def __init__(self, activation: SphereActivation) -> None:
        super().__init__()
        self.activation = activation

    def hidden_in(self, hidden: int) -> int:
        return self.activation.expansion * hidden

    def build(self, in_channels: int, hidden: int) -> dict[str, nn.Module]:
        num = self.activation.num_scalars(hidden)
        return {"gating_linear": nn.Linear(in_channels, num)} if num else {}

    def forward(
        self, ffn: nn.Module, x: torch.Tensor, h: torch.Tensor, grids: SphereGrids
    ) -> torch.Tensor:
        gating = getattr(ffn, "gating_linear", None)
        scalars = gating(x[:, 0]) if gating is not None else None
        return self.activation(scalars, h, grids.node, grids.differentiable_twice)


class GridMLP(FFNActivation):
    """EquiformerV2's grid MLP: bias-free Linear-SiLU-Linear-SiLU-Linear along channels at every
    node-grid point; with ``separable`` its l = 0 output is replaced by ``SiLU(Linear(x[l=0]))``
    (``scalar_mlp``)."""

    def __init__(self, separable: bool) -> None:
        super().__init__()
        self.separable = separable

    def build(self, in_channels: int, hidden: int) -> dict[str, nn.Module]:
        modules: dict[str, nn.Module] = {}
        if self.separable:
            modules["scalar_mlp"] = nn.Sequential(nn.Linear(in_channels, hidden), nn.SiLU())
        modules["grid_mlp"] = nn.Sequential(
            nn.Linear(hidden, hidden, bias=False),
            nn.SiLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.SiLU(),
            nn.Linear(hidden, hidden, bias=False),
        )
        return modules

    def forward(
        self, ffn: nn.Module, x: torch.Tensor, h: torch.Tensor, grids: SphereGrids
    ) -> torch.Tensor:
        h = self._on_grid(ffn.grid_mlp, ffn.training, h, grids)
        if self.separable:
            h = torch.cat((ffn.scalar_mlp(x[:, 0]).unsqueeze(1), h[:, 1:]), dim=1)
        return h

    @staticmethod
    def _on_grid(
        mlp: nn.Sequential, training: bool, h: torch.Tensor, grids: SphereGrids
    ) -> torch.Tensor:
        """The channel MLP at every grid point.

        Outside training (and in training with ``memory_saving``), fused and chunked over nodes
        (`eqv2.nn.grid_mlp`): faster forward, and backward recomputes the grid tensors instead
        of storing them. Otherwise (and for double backward, and under autocast) plain
        (coefficient, node·channel) GEMMs and modules: in training the fused backward's
        recomputation made a 31M step 9-18 % slower for 21 % less memory.
        """
        grid = grids.node
        training = training and torch.is_grad_enabled()
        fused = (grids.memory_saving or not training) and not grids.differentiable_twice
        if fused and autocast_dtype(h) is None:
            weights = [mlp[i].weight for i in (0, 2, 4)]
            return grid_mlp(h, grid.to_grid, grid.from_grid, *weights)
        return on_node_grid(lambda values: mlp(values), h, grid)


def on_node_grid(function, h: torch.Tensor, grid) -> torch.Tensor:
    """Apply ``function`` to grid values (G, N, H) of node features h (N, n, H) and project
    back: (coefficient, node·channel) GEMMs, the small dimension innermost."""
    num_nodes, n, channels = h.shape
    columns = h.transpose(0, 1).reshape(n, num_nodes * channels)
    values = torch.mm(grid.to_grid, columns).view(-1, num_nodes, channels)  # (G, N, H)
    values = function(values)
    out_channels = values.shape[-1]
    out = torch.mm(grid.from_grid, values.reshape(-1, num_nodes * out_channels))
    return out.view(n, num_nodes, out_channels).transpose(0, 1)
