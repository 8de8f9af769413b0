"""Cut-off envelopes: smooth weights env(r) that take every edge to zero at the cut-off.

EquiformerV2 as published has no envelope: an edge's message jumps from finite to nothing when
its length crosses the cut-off, so energies and forces are discontinuous there and molecular
dynamics drifts. The smooth mode (EquiformerV3's fix) multiplies every edge's contribution by
an envelope: inside the attention softmax, on the attention-weighted messages and in the
edge-degree embedding (see ``eqv2.nn.segment.segment_softmax``).

An envelope is a small immutable object mapping distances (E,) to weights (E,) in [0, 1],
chosen by the config's ``envelope`` key (``{"type": "polynomial", "p": 5}``); adding one is a
class here and a line in :data:`ENVELOPES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = ["ENVELOPES", "Envelope", "PolynomialEnvelope", "make_envelope"]


class Envelope(Protocol):
    """``envelope(distance (E,)) -> weight (E,)``: 1 at r = 0 (or near it), 0 for r ≥ cutoff."""

    cutoff: float

    def __call__(self, distance: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class PolynomialEnvelope:
    """env(x) = 1 − (p+1)(p+2)/2 · x^p + p(p+2) · x^(p+1) − p(p+1)/2 · x^(p+2), x = r / cutoff.

    The polynomial of DimeNet (Gasteiger et al. 2020, eq. 8) used by eSEN and EquiformerV3:
    env(0) = 1, and env, env' and env'' all vanish at x = 1 (env ≈ C (1 − x)³ there), so
    energies built from env-weighted edges have continuous forces and force derivatives as an
    edge crosses the cut-off. It is 0 for x ≥ 1 (``torch.where``; the polynomial's own branch
    beyond 1 never reaches the output or its gradients).

    Attributes:
        cutoff: cut-off radius r_c in Å.
        p: the exponent (p ≥ 1; 5 in EquiformerV3 and eSEN).
    """

    cutoff: float
    p: int = 5

    def __post_init__(self) -> None:
        if not (isinstance(self.p, int) and not isinstance(self.p, bool) and self.p >= 1):
            raise ValueError(f"envelope p={self.p!r}: must be an integer ≥ 1 (5 is customary).")
        if not self.cutoff > 0:
            raise ValueError(f"envelope cutoff={self.cutoff!r}: must be positive (Å).")

    def __call__(self, distance: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = distance / self.cutoff
        inside = x < 1.0
        # evaluate the polynomial only on clamped x so the branch that is thrown away stays
        # finite (a NaN there would leak into gradients through torch.where)
        xc = torch.where(inside, x, torch.zeros_like(x))
        xp = xc.pow(p)
        a, b, c = -(p + 1) * (p + 2) / 2.0, float(p * (p + 2)), -p * (p + 1) / 2.0
        value = 1.0 + xp * (a + xc * (b + c * xc))
        return torch.where(inside, value, torch.zeros_like(value))


#: config ``envelope.type`` → class (built with ``cutoff`` and the remaining keys)
ENVELOPES: dict[str, type] = {"polynomial": PolynomialEnvelope}


def make_envelope(spec: Mapping[str, Any] | None, cutoff: float) -> Envelope | None:
    """The envelope a config asks for, or None (EquiformerV2 as published).

    Args:
        spec: the config's ``envelope`` mapping, e.g. ``{"type": "polynomial", "p": 5}``.
        cutoff: the model's cut-off (``max_radius``, Å).

    Raises:
        ValueError: unknown type or options, naming the key and the choices.
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(
            f"envelope={spec!r}: expected a mapping with a 'type' key, e.g. "
            "{'type': 'polynomial', 'p': 5}, or null for no envelope."
        )
    options = dict(spec)
    kind = options.pop("type")
    if kind not in ENVELOPES:
        raise ValueError(f"envelope type={kind!r}: choose one of {sorted(ENVELOPES)}.")
    try:
        return ENVELOPES[kind](cutoff=float(cutoff), **options)
    except TypeError as err:
        raise ValueError(f"envelope {dict(spec)!r}: bad options ({err}).") from None
