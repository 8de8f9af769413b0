"""One object per coefficient layout: what the layers ask about ``(lmax, mmax)`` features.

`CoefficientLayout(lmax, mmax)` answers every bookkeeping question the network layers have
about node features (degrees ``0..lmax``, l-major) and their edge-frame form (orders
``|m| <= mmax``, m-major): sizes, degree of each coefficient, the m-major permutation, the
coefficients per order, and the sphere grids in either layout. It is a frozen, hashable value;
the tensors it returns are built from the pure functions of `eqv2.so3.layout` and
`eqv2.so3.grid`, and grids are cast from float64 masters, so a float64 model always sees
exact grids whatever dtypes it went through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ._cache import cached_constant
from .grid import s2_grid_matrices
from .layout import degree_order, m_major_index, num_coefficients, truncated_index

__all__ = ["CoefficientLayout", "GridMatrices"]


class GridMatrices(NamedTuple):
    """A sphere grid of ``G`` points as two matrices for features with ``n`` coefficients."""

    to_grid: torch.Tensor  #: (G, n): values at the grid points = to_grid @ coefficients
    from_grid: torch.Tensor  #: (n, G): coefficients = from_grid @ values (quadrature)


def _grid(
    lmax: int,
    mmax: int,
    resolution: int | None,
    columns: torch.Tensor,
    dtype: torch.dtype,
    device: torch.device,
) -> GridMatrices:
    """The float64 reference grid with its coefficient columns reordered, then cast."""
    to_grid, from_grid = s2_grid_matrices(lmax, mmax, resolution=resolution)
    n = to_grid.shape[-1]
    to_grid, from_grid = to_grid.reshape(-1, n)[:, columns], from_grid.reshape(-1, n)[:, columns]
    return GridMatrices(
        to_grid.to(dtype=dtype, device=device).contiguous(),
        from_grid.T.to(dtype=dtype, device=device).contiguous(),
    )


@cached_constant
def _edge_grid(
    lmax: int, mmax: int, resolution: int | None, dtype: torch.dtype, device: torch.device
) -> GridMatrices:
    # columns of s2_grid_matrices follow truncated_index (l-major): reorder them to m-major
    kept = truncated_index(lmax, mmax)
    position = torch.full(((lmax + 1) ** 2,), -1, dtype=torch.long)
    position[kept] = torch.arange(len(kept))
    return _grid(lmax, mmax, resolution, position[m_major_index(lmax, mmax)], dtype, device)


@cached_constant
def _node_grid(
    lmax: int, resolution: int | None, dtype: torch.dtype, device: torch.device
) -> GridMatrices:
    return _grid(lmax, lmax, resolution, torch.arange((lmax + 1) ** 2), dtype, device)


def _device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # one cache entry per physical device
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@dataclass(frozen=True)
class CoefficientLayout:
    """Features of degrees ``l <= lmax``; in edge frames only orders ``|m| <= mmax`` are kept.

    Node features have ``S = (lmax+1)**2`` coefficients in l-major order; edge-frame features
    have ``K`` coefficients in m-major order: the ``lmax+1`` coefficients of ``m = 0``, then for
    each ``m = 1..mmax`` the ``+m`` block and the ``-m`` block of ``lmax+1-m`` coefficients.

    Args:
        lmax: largest degree (``>= 0``).
        mmax: largest order kept in edge frames (``0 <= mmax <= lmax``; default ``lmax``).

    Index tensors are fresh CPU LongTensors (callers register them as buffers or move them);
    grid matrices are cached per (dtype, device): treat them as read-only.
    """

    lmax: int
    mmax: int = None  # type: ignore[assignment]  # None → lmax, set in __post_init__

    def __post_init__(self) -> None:
        if self.mmax is None:
            object.__setattr__(self, "mmax", self.lmax)
        if not 0 <= self.mmax <= self.lmax:
            raise ValueError(
                f"CoefficientLayout(lmax={self.lmax}, mmax={self.mmax}): need 0 <= mmax <= lmax."
            )

    # -- sizes ------------------------------------------------------------------------------
    @property
    def num_coefficients(self) -> int:
        """``S = (lmax+1)**2``: coefficients of a node feature (l-major)."""
        return (self.lmax + 1) ** 2

    @property
    def num_edge_coefficients(self) -> int:
        """``K``: coefficients kept in an edge frame (``|m| <= mmax``, m-major)."""
        return num_coefficients(self.lmax, self.mmax)

    @property
    def order_sizes(self) -> tuple[int, ...]:
        """Coefficients per sign of order ``m = 0..mmax``: ``(lmax+1, lmax, ..., lmax+1-mmax)``.

        In the m-major layout ``m = 0`` is one block of ``order_sizes[0]``; each ``m > 0`` is a
        ``+m`` and a ``-m`` block of ``order_sizes[m]`` coefficients each.
        """
        return tuple(self.lmax + 1 - m for m in range(self.mmax + 1))

    # -- indices ----------------------------------------------------------------------------
    def degree_index(self) -> torch.Tensor:
        """(S,) degree ``l`` of every l-major coefficient: ``[0, 1, 1, 1, 2, ...]``."""
        return degree_order(self.lmax)[0]

    def m_major_index(self) -> torch.Tensor:
        """(K,) l-major index of every m-major coefficient (`eqv2.so3.m_major_index`)."""
        return m_major_index(self.lmax, self.mmax)

    def edge_degree_index(self) -> torch.Tensor:
        """(K,) degree ``l`` of every m-major (edge-frame) coefficient."""
        return self.degree_index()[self.m_major_index()]

    # -- grids ------------------------------------------------------------------------------
    def edge_grid(
        self,
        resolution: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> GridMatrices:
        """Sphere grid for edge-frame features: ``to_grid (G, K)``, ``from_grid (K, G)``, m-major.

        The reference's ``SO3_Grid(lmax, mmax, "component", resolution)`` matrices (degrees
        ``l > mmax`` rescaled, see `eqv2.so3.s2_grid_matrices`), columns in m-major order.
        """
        return _edge_grid(self.lmax, self.mmax, resolution, dtype, _device(device))

    def node_grid(
        self,
        resolution: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> GridMatrices:
        """Sphere grid for node features (all orders): ``to_grid (G, S)``, ``from_grid (S, G)``."""
        return _node_grid(self.lmax, resolution, dtype, _device(device))
