"""Equivariant normalisations: the names other modules import (see `eqv2.nn.norms`).

The classes live in `eqv2.nn.norms`, one module per variant, chosen by name from `NORMS`.
``EquivariantRMSNormSH`` is ``rms_norm_sh``, the same class as EquiformerV3's
``merge_layer_norm``.
"""

from __future__ import annotations

from eqv2.nn.norms import (
    EPS,
    NORMS,
    EquivariantLayerNorm,
    EquivariantLayerNormSH,
    LayerNorm,
    MergedLayerNorm,
    MergedRMSNorm,
    make_norm,
)

EquivariantRMSNormSH = MergedLayerNorm

__all__ = [
    "EPS",
    "NORMS",
    "EquivariantLayerNorm",
    "EquivariantLayerNormSH",
    "EquivariantRMSNormSH",
    "LayerNorm",
    "MergedLayerNorm",
    "MergedRMSNorm",
    "make_norm",
]
