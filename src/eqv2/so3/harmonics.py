"""Real spherical harmonics in e3nn's convention (polar axis +y).

For a unit vector ``r = (x, y, z)`` write ``y = cos(beta)`` and ``z + i x = sin(beta) e^{i alpha}``.
With "integral" normalisation

    Y_{l,0}  =           N_{l,0} P_l^0(cos beta)
    Y_{l,+m} = sqrt(2) * N_{l,m} P_l^m(cos beta) cos(m alpha)
    Y_{l,-m} = sqrt(2) * N_{l,m} P_l^m(cos beta) sin(m alpha)

with ``N_{l,m} = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!)`` and ``P_l^m`` the associated Legendre
functions *without* the Condon-Shortley phase. In l-major order ``Y^1 = sqrt(3/(4 pi)) (x, y, z)``.

The evaluation never forms angles: ``sin(beta)^m e^{i m alpha} = (z + i x)^m`` is built by complex
multiplication, and ``P_l^m / sin(beta)^m`` by the normalised three-term recursion in ``l``, written
homogeneously in ``(y, |r|^2)``. The result is a polynomial in ``x, y, z`` (exactly e3nn's
polynomials when ``normalize=False``), smooth everywhere, accurate to rounding for any ``l``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["spherical_harmonics"]

_NORMALIZATIONS = ("integral", "component", "norm")


def _legendre_coefficients(lmax: int) -> dict[tuple[int, int], tuple[float, float]]:
    """(a, b) such that ``q_l^m = a y q_{l-1}^m - b r^2 q_{l-2}^m`` (component normalisation)."""
    coeffs = {}
    for m in range(lmax + 1):
        for l in range(m + 1, lmax + 1):
            a = math.sqrt((4 * l * l - 1) / (l * l - m * m))
            b = math.sqrt(((l - 1) ** 2 - m * m) * (2 * l + 1) / ((l * l - m * m) * (2 * l - 3)))
            coeffs[(l, m)] = (a, b)
    return coeffs


def _sh_component(lmax: int, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> list:
    """List of ``(lmax+1)**2`` tensors: homogeneous SH polynomials, component normalisation."""
    r2 = x * x + y * y + z * z
    coeffs = _legendre_coefficients(lmax)
    # q[(l, m)]: sqrt(2 - delta_m0) * sqrt(4 pi) N_lm P_l^m / sin^m, homogeneous of degree l - m.
    out: list = [None] * ((lmax + 1) ** 2)
    diag = torch.ones_like(x)  # q_m^m (without the sqrt(2)), degree 0
    cos_m, sin_m = torch.ones_like(x), torch.zeros_like(x)  # Re, Im of (z + i x)^m
    for m in range(lmax + 1):
        if m > 0:
            diag = diag * math.sqrt((2 * m + 1) / (2 * m))
            cos_m, sin_m = cos_m * z - sin_m * x, sin_m * z + cos_m * x
        prev2, prev1 = None, diag
        for l in range(m, lmax + 1):
            if l == m:
                q = diag
            else:
                a, b = coeffs[(l, m)]
                q = a * y * prev1 if prev2 is None else a * y * prev1 - b * r2 * prev2
                prev2, prev1 = prev1, q
            if m == 0:
                out[l * l + l] = q
            else:
                q2 = math.sqrt(2.0) * q
                out[l * l + l + m] = q2 * cos_m
                out[l * l + l - m] = q2 * sin_m
    return out


def spherical_harmonics(
    lmax: int,
    vectors: torch.Tensor,
    normalize: bool = True,
    normalization: str = "integral",
) -> torch.Tensor:
    r"""Real spherical harmonics ``Y^0 .. Y^lmax`` of ``vectors``, concatenated in l-major order.

    Matches ``e3nn.o3.spherical_harmonics(range(lmax+1), vectors, normalize, normalization)``
    (including ``normalize=True`` sending a zero vector to ``Y^0`` only) for every ``lmax``, also
    beyond e3nn's limit of 12.

    Properties:

    * polynomials of ``x, y, z``, homogeneous of degree ``l`` when ``normalize=False``;
    * equivariant: ``Y(R r) = D(R) Y(r)`` with ``D = wigner_d(R, lmax)``;
    * orthogonal on the sphere; normalisation ``"component"``: ``|Y^l(r)|^2 = 2l+1`` on the unit
      sphere; ``"norm"``: ``|Y^l(r)| = 1``; ``"integral"``: ``\int_{S^2} Y^l_m Y^l_m = 1``;
    * ``Y^1(r) = c (x, y, z)`` (the polar axis is +y, ``Y^l_0`` depends on ``y`` only);
    * differentiable everywhere (no angles are formed).

    Args:
        lmax: largest degree.
        vectors: tensor of shape ``(..., 3)``.
        normalize: project ``vectors`` onto the unit sphere first.
        normalization: ``"integral"``, ``"component"`` or ``"norm"``.

    Returns:
        tensor of shape ``(..., (lmax+1)**2)``.
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    if vectors.shape[-1] != 3:
        raise ValueError(f"vectors must have shape (..., 3), got {tuple(vectors.shape)}")
    if normalize:
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
    x, y, z = vectors.unbind(-1)
    sh = torch.stack(_sh_component(lmax, x, y, z), dim=-1)
    if normalization == "integral":
        sh = sh / math.sqrt(4 * math.pi)
    elif normalization == "norm":
        scale = [1.0 / math.sqrt(2 * l + 1) for l in range(lmax + 1) for _ in range(2 * l + 1)]
        sh = sh * sh.new_tensor(scale)
    return sh
