"""Index bookkeeping for spherical-harmonic coefficients.

Two orders are used throughout eqv2:

* **l-major** (the feature order): coefficient ``(l, m)`` sits at ``l**2 + (m + l)``, i.e.
  ``(0,0), (1,-1), (1,0), (1,1), (2,-2), ...`` for ``m = -l..l``.
* **m-major** (the order inside SO(2) convolutions), restricted to ``|m| <= mmax``: first every
  ``m = 0`` coefficient for ``l = 0..lmax``; then, for ``m = 1..mmax``, the ``+m`` coefficients for
  ``l = m..lmax`` followed by the ``-m`` coefficients for ``l = m..lmax``.

All functions are pure, cached, and return fresh CPU tensors (callers move them where needed).
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = [
    "degree_order",
    "m_major_index",
    "num_coefficients",
    "rotate_back_rescale",
    "truncated_index",
]


def _check(lmax: int, mmax: int | None = None) -> None:
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    if mmax is not None and mmax < 0:
        raise ValueError(f"mmax must be >= 0, got {mmax}")


def num_coefficients(lmax: int, mmax: int | None = None) -> int:
    """Number of coefficients with ``l <= lmax`` and ``|m| <= mmax`` (all if ``mmax`` is None)."""
    _check(lmax, mmax)
    if mmax is None or mmax >= lmax:
        return (lmax + 1) ** 2
    return sum(2 * min(l, mmax) + 1 for l in range(lmax + 1))


@functools.cache
def _degree_order(lmax: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ls = tuple(l for l in range(lmax + 1) for _ in range(2 * l + 1))
    ms = tuple(m for l in range(lmax + 1) for m in range(-l, l + 1))
    return ls, ms


def degree_order(lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Degree ``l`` and order ``m`` of every coefficient in the l-major list.

    Returns two LongTensors of shape ``((lmax+1)**2,)`` with ``l[i]**2 + m[i] + l[i] == i``.
    """
    _check(lmax)
    ls, ms = _degree_order(lmax)
    return torch.tensor(ls, dtype=torch.long), torch.tensor(ms, dtype=torch.long)


@functools.cache
def _truncated_index(lmax: int, mmax: int) -> tuple[int, ...]:
    return tuple(l * l + m + l for l in range(lmax + 1) for m in range(-l, l + 1) if abs(m) <= mmax)


def truncated_index(lmax: int, mmax: int) -> torch.Tensor:
    """l-major indices of the coefficients with ``|m| <= mmax``, kept in l-major order.

    Shape ``(K,)`` with ``K = num_coefficients(lmax, mmax)``; the identity when ``mmax >= lmax``.
    """
    _check(lmax, mmax)
    return torch.tensor(_truncated_index(lmax, mmax), dtype=torch.long)


@functools.cache
def _m_major_index(lmax: int, mmax: int) -> tuple[int, ...]:
    out = [l * l + l for l in range(lmax + 1)]  # m = 0
    for m in range(1, min(mmax, lmax) + 1):
        out += [l * l + l + m for l in range(m, lmax + 1)]  # +m
        out += [l * l + l - m for l in range(m, lmax + 1)]  # -m
    return tuple(out)


def m_major_index(lmax: int, mmax: int) -> torch.Tensor:
    """l-major indices listed in m-major order (``|m| <= mmax``).

    ``x_m = x_l[..., m_major_index(lmax, mmax), :]`` turns an l-major feature into the m-major
    layout used by SO(2) convolutions; it is a permutation of `truncated_index`.
    Shape ``(K,)``.
    """
    _check(lmax, mmax)
    return torch.tensor(_m_major_index(lmax, mmax), dtype=torch.long)


@functools.cache
def _rescale(lmax: int, mmax: int) -> tuple[float, ...]:
    return tuple(
        math.sqrt((2 * l + 1) / (2 * mmax + 1)) if l > mmax else 1.0
        for l in range(lmax + 1)
        for _ in range(2 * l + 1)
    )


def rotate_back_rescale(lmax: int, mmax: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-coefficient factor applied when rotating an m-truncated feature back to the global frame.

    ``sqrt((2l+1) / (2*mmax+1))`` for degrees ``l > mmax`` and ``1`` otherwise, shape
    ``((lmax+1)**2,)`` in l-major order (the reference's ``get_rotate_inv_rescale``, which
    multiplies every entry of the degree-``l`` block of the inverse Wigner matrix by that factor).
    """
    _check(lmax, mmax)
    return torch.tensor(_rescale(lmax, mmax), dtype=dtype)
