"""DeNS force encoding: per-atom forces as an l ≤ lmax signal added to the node embeddings."""

from __future__ import annotations

import math

import torch

from eqv2.nn.so3_linear import SO3Linear
from eqv2.so3.harmonics import spherical_harmonics


class ForceEmbedding(SO3Linear):
    """fairchem ``EqV2DeNSBackbone.force_embedding``: an SO(3) linear map 1 → C channels.

    Its input is ``Y(f̂) · |f| / √3`` ('component' harmonics), or zeros when no forces are
    encoded: at inference, and always with ``use_force_encoding=False``. The l=0 bias is
    added to every node either way, which is why the reference's inference outputs depend on it.
    """

    def __init__(self, sphere_channels: int, lmax: int) -> None:
        super().__init__(1, sphere_channels, lmax)

    def encode(
        self, forces: torch.Tensor | None, num_nodes: int, like: torch.Tensor
    ) -> torch.Tensor:
        """(N, (lmax+1)², C) to add to the node embeddings; ``like`` sets dtype and device."""
        size = (self.lmax + 1) ** 2
        if forces is None:
            signal = like.new_zeros(num_nodes, size, 1)
        else:
            forces = forces.to(like.dtype)
            sh = spherical_harmonics(self.lmax, forces, normalization="component")
            norm = forces.norm(dim=-1, keepdim=True) / math.sqrt(3.0)
            signal = (sh * norm).unsqueeze(2)
        return self(signal)
