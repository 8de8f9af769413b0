"""Minimum-image displacements under per-axis periodic boundaries, exact for any cell.

Adding lattice vectors of the periodic axes to a displacement ``d`` gives ``d + n @ B`` (``B``
the periodic rows of the cell, ``n`` integer). The shortest of these is a closest-vector problem
in a lattice of dimension at most 3. It is solved exactly: reduce ``B`` (LLL) so the search stays
small, round ``d`` to the nearest lattice point in that basis (Babai), then enumerate every
integer point in the box that can hold a shorter image, a box bounded through the inverse Gram
matrix. Rounding fractional coordinates alone is wrong in skewed cells; and an open axis must
not be mixed in (the component of ``d`` along open directions is never wrapped).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from eqv2.graph.cells import check_cell

__all__ = ["minimum_image", "reduce_lattice"]


def reduce_lattice(basis: np.ndarray, delta: float = 0.75) -> np.ndarray:
    """LLL-reduce the rows of ``basis`` (``k`` linearly independent vectors, ``k <= 3``).

    Args:
        basis: ``(k, 3)`` lattice vectors as rows.
        delta: Lovász parameter in (0.25, 1).

    Returns:
        ``(k, 3)`` rows spanning the same lattice, short and nearly orthogonal.
    """
    b = np.array(basis, dtype=np.float64)
    k = len(b)

    def gram_schmidt() -> tuple[np.ndarray, np.ndarray]:
        ortho = np.zeros_like(b)
        mu = np.zeros((k, k))
        for i in range(k):
            ortho[i] = b[i]
            for j in range(i):
                mu[i, j] = b[i] @ ortho[j] / (ortho[j] @ ortho[j])
                ortho[i] = ortho[i] - mu[i, j] * ortho[j]
        return ortho, mu

    i = 1
    while i < k:
        for j in range(i - 1, -1, -1):  # size reduction against every earlier vector
            _, mu = gram_schmidt()
            q = np.round(mu[i, j])
            if q:
                b[i] -= q * b[j]
        ortho, mu = gram_schmidt()
        if ortho[i] @ ortho[i] >= (delta - mu[i, i - 1] ** 2) * (ortho[i - 1] @ ortho[i - 1]):
            i += 1
        else:
            b[[i - 1, i]] = b[[i, i - 1]]
            i = max(i - 1, 1)
    return b


def minimum_image(
    displacements: np.ndarray,
    cell: np.ndarray,
    pbc: Sequence[bool] | bool,
    label: str = "The structure",
) -> np.ndarray:
    """Shortest periodic images of displacement vectors.

    Along periodic axes any lattice vector may be added; open axes are left alone.

    Args:
        displacements: ``(N, 3)`` vectors (Å).
        cell: ``(3, 3)`` lattice vectors as rows; open axes may hold any vector, zero included.
        pbc: ``(3,)`` periodicity per axis (or one bool for all).
        label: how error messages name the structure.

    Returns:
        ``(N, 3)`` minimum-image vectors (each differs from its input by a lattice vector).

    Raises:
        ValueError: the cell is non-finite or singular on its periodic axes.
    """
    d = np.asarray(displacements, dtype=np.float64).reshape(-1, 3)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if not pbc.any() or len(d) == 0:
        return d.copy()
    check_cell(cell, pbc, label)
    basis = reduce_lattice(cell[pbc])
    gram = basis @ basis.T
    # real coordinates of the projection of d on the periodic span, then the nearest lattice point
    x = np.linalg.solve(gram, basis @ d.T).T
    base = d - np.round(x) @ basis
    # any shorter image d + n B has (n - x)^T G (n - x) <= |base|^2 - |d_perp|^2 = rho^2, so
    # |n_i - x_i| <= rho sqrt(G^-1_ii): a box around the rounded point holds every candidate
    frac = x - np.round(x)
    rho2 = np.einsum("ni,ij,nj->n", frac, gram, frac)
    half = np.sqrt(rho2.max() * np.diag(np.linalg.inv(gram)))
    reach = np.ceil(half + 0.5).astype(int)
    shifts = np.array(list(itertools.product(*(range(-r, r + 1) for r in reach))), dtype=float)
    candidates = base[:, None, :] + (shifts @ basis)[None]
    best = np.einsum("nci,nci->nc", candidates, candidates).argmin(axis=1)
    return candidates[np.arange(len(d)), best]
