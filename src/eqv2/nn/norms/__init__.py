"""Equivariant normalisations of (N, (lmax+1)², C) features (l-major), chosen by name.

`NORMS` maps each ``norm_type`` name to its class; every class is built as
``cls(lmax, num_channels)``. To add a norm: write its class in a new module of this package
and add one line to `NORMS`.

* ``layer_norm``: per degree l, RMS over its orders and all channels (l = 0 centred first),
  per-degree affine scale, bias on l = 0.
* ``layer_norm_sh`` (the EquiformerV2 paper's separable layer norm): ordinary LayerNorm on
  l = 0; a single balanced RMS over all l > 0; per-degree affine scale.
* ``rms_norm_sh`` and ``merge_layer_norm`` (EquiformerV3's merged layer norm, the same
  function): one balanced RMS over all degrees including l = 0 (centred), per-degree scale,
  bias on l = 0.
* ``merge_rms_norm``: the same without centring and bias.

All statistics are computed without Python loops over degrees, and in float32 under autocast
(`eqv2.nn.precision`).
"""

from __future__ import annotations

from torch import nn

from eqv2.nn.norms.common import EPS, LayerNorm
from eqv2.nn.norms.layer_norm import EquivariantLayerNorm
from eqv2.nn.norms.merged import MergedLayerNorm, MergedRMSNorm
from eqv2.nn.norms.separable import EquivariantLayerNormSH

#: ``norm_type`` name → class built as ``cls(lmax, num_channels)``.
NORMS: dict[str, type[nn.Module]] = {
    "layer_norm": EquivariantLayerNorm,
    "layer_norm_sh": EquivariantLayerNormSH,
    "rms_norm_sh": MergedLayerNorm,
    "merge_layer_norm": MergedLayerNorm,
    "merge_rms_norm": MergedRMSNorm,
}


def make_norm(norm_type: str, lmax: int, num_channels: int) -> nn.Module:
    """The normalisation layer called ``norm_type`` (a key of `NORMS`)."""
    if norm_type not in NORMS:
        raise ValueError(f"norm_type={norm_type!r}: choose one of {', '.join(map(repr, NORMS))}.")
    return NORMS[norm_type](lmax, num_channels)


__all__ = [
    "EPS",
    "NORMS",
    "EquivariantLayerNorm",
    "EquivariantLayerNormSH",
    "LayerNorm",
    "MergedLayerNorm",
    "MergedRMSNorm",
    "make_norm",
]
