"""Activations of equivariant features, chosen by name.

* `ACTIVATIONS`: sphere activations (`SphereActivation`), usable in attention and, with a
  ``gating_linear`` for their scalars, in the feed-forward network: ``gate``, ``s2``,
  ``separable_s2`` (EquiformerV2) and ``swiglu_s2`` (EquiformerV3's SwiGLU-S²).
* `ffn_activation_names()`: what the feed-forward network can do between its SO(3) linears:
  every name of `ACTIVATIONS`, plus the grid MLPs ``grid_mlp``, ``separable_grid_mlp``
  (EquiformerV2) and ``swiglu_grid_mlp`` (EquiformerV3).

To add an activation: write its `SphereActivation` subclass in a new module here and add one
line to `ACTIVATIONS` (a grid-MLP-like FFN variant: an `FFNActivation`, one line in
`_GRID_MLPS`). The fairchem switches ``use_gate_act``, ``use_sep_s2_act`` and ``use_grid_mlp``
map onto these names in one place: `attention_activation_name` and `ffn_activation_name`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from eqv2.nn.activations.base import SphereActivation
from eqv2.nn.activations.ffn import FFNActivation, GridMLP, PointwiseFFN
from eqv2.nn.activations.gate import GateActivation
from eqv2.nn.activations.s2 import S2Activation, SeparableS2Activation
from eqv2.nn.activations.swiglu_grid_mlp import SwiGLUGridMLP
from eqv2.nn.activations.swiglu_s2 import SwiGLUS2Activation

#: name → sphere activation class, built as ``cls(degree_of_each_coefficient)``.
ACTIVATIONS: dict[str, type[SphereActivation]] = {
    "gate": GateActivation,
    "s2": S2Activation,
    "separable_s2": SeparableS2Activation,
    "swiglu_s2": SwiGLUS2Activation,
}

_GRID_MLPS: dict[str, Callable[[], FFNActivation]] = {
    "grid_mlp": lambda: GridMLP(separable=False),
    "separable_grid_mlp": lambda: GridMLP(separable=True),
    "swiglu_grid_mlp": SwiGLUGridMLP,
}


def ffn_activation_names() -> tuple[str, ...]:
    """Every feed-forward activation name: the sphere activations, then the grid MLPs."""
    return (*ACTIVATIONS, *_GRID_MLPS)


def attention_activation_name(use_gate_act: bool, use_sep_s2_act: bool) -> str:
    """The attention activation fairchem's switches select (gate wins over separable)."""
    if use_gate_act:
        return "gate"
    return "separable_s2" if use_sep_s2_act else "s2"


def ffn_activation_name(use_gate_act: bool, use_sep_s2_act: bool, use_grid_mlp: bool) -> str:
    """The feed-forward activation fairchem's switches select (the grid MLP wins; it has its
    scalar branch with ``use_sep_s2_act``, whatever ``use_gate_act``)."""
    if use_grid_mlp:
        return "separable_grid_mlp" if use_sep_s2_act else "grid_mlp"
    return attention_activation_name(use_gate_act, use_sep_s2_act)


def _check(name: str, choices) -> None:
    if name not in choices:
        raise ValueError(f"activation {name!r}: choose one of {', '.join(map(repr, choices))}.")


def make_activation(name: str, degree: torch.Tensor) -> SphereActivation:
    """The sphere activation ``name`` for coefficients of degrees ``degree (n,)``."""
    _check(name, ACTIVATIONS)
    return ACTIVATIONS[name](degree)


def make_ffn_activation(name: str, degree: torch.Tensor) -> FFNActivation:
    """The feed-forward activation ``name`` for node coefficients of degrees ``degree``."""
    _check(name, ffn_activation_names())
    if name in _GRID_MLPS:
        return _GRID_MLPS[name]()
    return PointwiseFFN(make_activation(name, degree))


__all__ = [
    "ACTIVATIONS",
    "FFNActivation",
    "GateActivation",
    "GridMLP",
    "PointwiseFFN",
    "S2Activation",
    "SeparableS2Activation",
    "SphereActivation",
    "SwiGLUGridMLP",
    "SwiGLUS2Activation",
    "attention_activation_name",
    "ffn_activation_name",
    "ffn_activation_names",
    "make_activation",
    "make_ffn_activation",
]
