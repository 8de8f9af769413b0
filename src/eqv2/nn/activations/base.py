"""What a sphere activation is: the interface every variant implements."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.so3 import GridMatrices


class SphereActivation(nn.Module):
    """A nonlinearity for equivariant features ``x (B, n, expansion·H)`` → ``(B, n, H)``.

    Coefficient 0 of x is l = 0 (in l-major and m-major order alike). A variant may also
    consume invariant scalar channels ``scalars (B, num_scalars(H))`` made by the calling layer
    (the attention's first SO(2) convolution, or the feed-forward network's gating linear).
    Variants hold no trainable parameters (only index buffers), so the layers using them keep
    their parameter names whatever the variant.

    Args:
        degree: (n,) the degree l of each coefficient of x in the layer's layout.
    """

    #: channels of x per output channel (2 for variants that multiply two halves)
    expansion: int = 1

    def __init__(self, degree: torch.Tensor) -> None:
        super().__init__()
        self.lmax = int(degree.max()) if degree.numel() else 0

    def num_scalars(self, channels: int) -> int:
        """Scalar channels consumed for ``channels`` output channels."""
        return 0

    def forward(
        self,
        scalars: torch.Tensor,
        x: torch.Tensor,
        grid: GridMatrices,
        differentiable_twice: bool = False,
    ) -> torch.Tensor:
        raise NotImplementedError
