r"""Matrices between (m-truncated) spherical-harmonic coefficients and a sampled sphere grid.

The grid is e3nn's: ``lat`` polar angles ``beta_i = pi (i + 1/2) / lat`` and ``long`` azimuths
``alpha_j = 2 pi j / long``, at the points ``(sin b sin a, cos b, sin b cos a)``. Projection back
uses the Driscoll-Healy / Kostelec-Rockmore quadrature weights in ``beta`` and a plain sum in
``alpha``.

``to_grid[i, j, k]`` is the ``k``-th kept harmonic at grid point ``(i, j)`` times a per-degree
normalisation, so ``f(i, j) = sum_k to_grid[i, j, k] x_k``; ``from_grid`` carries the quadrature
weights so that ``x_k = sum_ij from_grid[i, j, k] f(i, j)`` recovers band-limited coefficients.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._cache import cached_constant
from .harmonics import spherical_harmonics
from .layout import truncated_index

__all__ = ["grid_resolution", "s2_grid_matrices"]

_NORMALIZATIONS = ("component", "integral", "norm")


def grid_resolution(
    lmax: int, mmax: int, resolution: int | tuple[int, int] | None = None
) -> tuple[int, int]:
    """``(lat, long)`` sizes: ``resolution`` for both if an int, as given if a ``(lat, long)``
    tuple, else ``2(lmax+1)`` latitudes and ``2 mmax + 1`` longitudes (``2 mmax + 3`` when
    ``mmax == lmax``), as the reference chooses."""
    if isinstance(resolution, tuple):
        return int(resolution[0]), int(resolution[1])
    if resolution is not None:
        return resolution, resolution
    lat = 2 * (lmax + 1)
    long = 2 * (mmax + 1) + 1 if lmax == mmax else 2 * mmax + 1
    return lat, long


def _quadrature_weights(lat: int) -> np.ndarray:
    """Kostelec-Rockmore weights for ``lat = 2b`` equiangular latitudes, normalised like e3nn."""
    b = lat // 2
    j = np.arange(2 * b, dtype=np.float64)[:, None]
    k = np.arange(b, dtype=np.float64)[None, :]
    inner = (np.sin((2 * j + 1) * (2 * k + 1) * math.pi / (4 * b)) / (2 * k + 1)).sum(axis=1)
    w = (2.0 / b) * np.sin(math.pi * (2 * j[:, 0] + 1) / (4 * b)) * inner
    return w / (2.0 * (2 * b) ** 2)


@cached_constant
def _master(
    lmax: int, mmax: int, resolution: int | None, normalization: str
) -> tuple[torch.Tensor, torch.Tensor]:
    lat, long = grid_resolution(lmax, mmax, resolution)
    if lat % 2 != 0 or lmax + 1 > lat // 2:
        raise ValueError(
            f"latitude resolution {lat} must be even and at least 2*(lmax+1) = {2 * (lmax + 1)}"
        )
    beta = (torch.arange(lat, dtype=torch.float64) + 0.5) * (math.pi / lat)
    alpha = torch.arange(long, dtype=torch.float64) * (2 * math.pi / long)
    sb, cb = torch.sin(beta)[:, None], torch.cos(beta)[:, None]
    points = torch.stack(
        torch.broadcast_tensors(sb * torch.sin(alpha), cb, sb * torch.cos(alpha)), dim=-1
    )
    sh = spherical_harmonics(lmax, points, normalize=False, normalization="integral")

    ls = torch.tensor([l for l in range(lmax + 1) for _ in range(2 * l + 1)], dtype=torch.float64)
    if normalization == "component":
        n_to = math.sqrt(4 * math.pi) / torch.sqrt(2 * ls + 1) / math.sqrt(lmax + 1)
        n_from = math.sqrt(4 * math.pi) * torch.sqrt(2 * ls + 1) * math.sqrt(lmax + 1)
    elif normalization == "norm":
        n_to = torch.full_like(ls, math.sqrt(4 * math.pi) / math.sqrt(lmax + 1))
        n_from = torch.full_like(ls, math.sqrt(4 * math.pi) * math.sqrt(lmax + 1))
    else:  # integral
        n_to = torch.ones_like(ls)
        n_from = torch.full_like(ls, 4 * math.pi)
    qw = torch.from_numpy(_quadrature_weights(lat)) * (lat**2 / long)

    # degrees above mmax are scaled up to compensate for the dropped orders
    rescale = torch.where(ls > mmax, torch.sqrt((2 * ls + 1) / (2 * mmax + 1)), 1.0)
    keep = truncated_index(lmax, mmax)
    to_grid = (sh * (n_to * rescale))[..., keep]
    from_grid = (sh * (n_from * rescale) * qw[:, None, None])[..., keep]
    return to_grid.contiguous(), from_grid.contiguous()


@cached_constant
def _cast(
    lmax: int,
    mmax: int,
    resolution: int | None,
    normalization: str,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    to_grid, from_grid = _master(lmax, mmax, resolution, normalization)
    return to_grid.to(dtype=dtype, device=device), from_grid.to(dtype=dtype, device=device)


def s2_grid_matrices(
    lmax: int,
    mmax: int,
    resolution: int | None = None,
    normalization: str = "component",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Sphere-grid sampling and projection matrices for coefficients with ``|m| <= mmax``.

    Equal to the reference's ``SO3_Grid(lmax, mmax, normalization, resolution)`` buffers
    ``to_grid_mat`` / ``from_grid_mat`` (themselves e3nn's ``ToS2Grid`` / ``FromS2Grid`` matrices,
    with degrees ``l > mmax`` scaled by ``sqrt((2l+1)/(2 mmax+1))`` when ``lmax != mmax``, then
    restricted to `truncated_index` columns), computed in float64.

    Properties:

    * ``to_grid[i, j, :]`` is ``spherical_harmonics`` at grid point ``(i, j)`` (truncated) times a
      per-degree factor;
    * round trip: ``einsum("ijk,ijn->kn", from_grid, to_grid)`` is diagonal, and equals ``I``
      when ``mmax >= lmax`` and the grid resolves degree ``lmax`` (``long > 2 lmax``);
    * rotations about +y by multiples of ``2 pi / long`` permute the grid's columns.

    Args:
        lmax, mmax: largest degree and order kept.
        resolution: grid size for both angles; default ``grid_resolution(lmax, mmax)``.
        normalization: ``"component"`` (what the EquiformerV2 backbone uses), ``"integral"`` or
            ``"norm"``.
        dtype, device: of the returned tensors.

    Returns:
        ``(to_grid, from_grid)``, each of shape ``(lat, long, K)``. They are cached: treat them as
        read-only.
    """
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    if lmax < 0 or mmax < 0:
        raise ValueError(f"lmax and mmax must be >= 0, got {lmax}, {mmax}")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _cast(lmax, mmax, resolution, normalization, dtype, device)
