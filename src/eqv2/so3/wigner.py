r"""Wigner-D matrices of real spherical harmonics, built directly from rotation matrices.

Convention: ``D(R)`` is the block-diagonal matrix with ``D(R) Y(r) = Y(R r)`` for the spherical
harmonics of `eqv2.so3.spherical_harmonics` (e3nn's basis, polar axis +y), so ``D^1(R) = R``.

Method (exact, no singular angles). Every rotation is written in one of two charts,

    chart A:  R = R_y(alpha) R_x(beta) R_y(gamma)
    chart B:  R = R_y(alpha) R_x(beta) R_y(gamma) Q,    Q = R_x(-pi/2) fixed,

choosing B exactly when ``|R_yy| > |R_yz|``. The chart is picked so that ``sin(beta) >= 1/sqrt(2)``:
the Euler angles are never near their singularity, and only their cosines and sines are used,
read off the matrix entries and divided by ``sin(beta)``. Then, per degree ``l``,

    D(R) = Y(alpha) J Y(beta) J^T Y(gamma) [D(Q)],

where ``Y(t) = D(R_y(t))`` acts on each ``(+m, -m)`` pair as a plane rotation by ``m t`` (the
polar axis is y), and ``J = D(P)``, ``D(Q)`` are constant matrices of fixed rotations
(``P`` swaps x and y, so ``R_x(t) = P R_y(t) P^T``) computed once in float64 by exact quadrature of
``\int Y(P r) Y(r)^T``. The ``beta`` stage is one GEMM against a constant tensor (the matrix
entries of ``J Y(beta) J^T`` are linear in ``cos(k beta), sin(k beta)``); the ``alpha`` and
``gamma`` stages are elementwise. Rows with ``|m| > mmax`` are never computed when not needed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._cache import cached_constant
from .harmonics import spherical_harmonics
from .layout import m_major_index, num_coefficients, rotate_back_rescale

__all__ = ["edge_rotation", "wigner_d"]

# P: 180 degree rotation about (x + y)/sqrt(2); maps y -> x, so R_x(t) = P R_y(t) P^T.
_P = ((0.0, 1.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, -1.0))
# Q = R_x(-pi/2): chart B writes R = R' Q with R' = R Q^T = R R_x(pi/2).
_Q = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))


@cached_constant
def _constant_wigner(rotation: tuple, l: int) -> torch.Tensor:
    """``D^l(rotation)`` for a fixed rotation, float64, by exact quadrature on the sphere."""
    n_y, n_phi = l + 1, 2 * l + 2  # exact for the degree-2l polynomial integrands
    nodes, weights = np.polynomial.legendre.leggauss(n_y)
    y = torch.from_numpy(nodes).to(torch.float64)[:, None].expand(n_y, n_phi)
    phi = torch.arange(n_phi, dtype=torch.float64) * (2 * math.pi / n_phi)
    s = torch.sqrt(1 - y * y)
    r = torch.stack([s * torch.sin(phi), y, s * torch.cos(phi)], dim=-1).reshape(-1, 3)
    w = (torch.from_numpy(weights)[:, None] * (2 * math.pi / n_phi)).expand(n_y, n_phi).reshape(-1)
    rot = torch.tensor(rotation, dtype=torch.float64)
    sl = slice(l * l, (l + 1) * (l + 1))
    y_r = spherical_harmonics(l, r, normalize=False)[:, sl]
    y_rot = spherical_harmonics(l, r @ rot.T, normalize=False)[:, sl]
    return torch.einsum("p,pa,pb->ab", w, y_rot, y_r)


@cached_constant
def _beta_stage_master(l: int, mm: int) -> torch.Tensor:
    """Constant ``G (2l+1, r, 2l+1)`` with ``(J Y(beta) J^T)[S, :] = sum_k f_k(beta) G_k``.

    ``S`` are the rows ``|m| <= mm``; features ``f = [1, cos(beta)..cos(l beta), sin(beta)..sin(l
    beta)]``.
    """
    n = 2 * l + 1
    J = _constant_wigner(_P, l)
    rows = J[l - mm : l + mm + 1]
    G = torch.zeros(n, 2 * mm + 1, n, dtype=torch.float64)
    G[0] = rows[:, l : l + 1] * J[:, l][None, :]  # m = 0: coefficient 1
    for m in range(1, l + 1):
        p, q = l + m, l - m  # indices of +m and -m
        # Y(beta) entries: [p,p] = [q,q] = cos(m beta); [q,p] = sin(m beta); [p,q] = -sin(m beta)
        G[m] = rows[:, p : p + 1] * J[:, p][None, :] + rows[:, q : q + 1] * J[:, q][None, :]
        G[l + m] = rows[:, q : q + 1] * J[:, p][None, :] - rows[:, p : p + 1] * J[:, q][None, :]
    return G


@cached_constant
def _constants(lmax: int, mmax: int, dtype: torch.dtype, device: torch.device) -> tuple:
    """Per-l constants, cast to ``dtype`` on ``device``: (G as (2l+1, 2*r*n), D(Q))."""
    out = []
    for l in range(lmax + 1):
        mm = min(l, mmax)
        G = _beta_stage_master(l, mm)
        # [G, G with columns reversed]: the gamma stage needs both (a GEMM beats a flip here)
        G = torch.stack([G, G.flip(-1)], dim=1).reshape(2 * l + 1, -1)
        G = G.to(dtype=dtype, device=device)
        DQ = _constant_wigner(_Q, l).to(dtype=dtype, device=device)
        out.append((G, DQ))
    return tuple(out)


def _powers(c: torch.Tensor, s: torch.Tensor, kmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos(k t), sin(k t)`` for ``k = 0..kmax`` from ``cos t, sin t``; shapes ``(B, kmax+1)``."""
    cs, ss = [torch.ones_like(c)], [torch.zeros_like(s)]
    for _ in range(kmax):
        cs.append(cs[-1] * c - ss[-1] * s)
        ss.append(ss[-1] * c + cs[-2] * s)
    return torch.stack(cs, dim=-1), torch.stack(ss, dim=-1)


def _signed_trig(
    cos_k: torch.Tensor, sin_k: torch.Tensor, l: int, mm: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos(|m| t)`` and ``sin(m t)`` for ``m = -mm..mm``; shapes ``(B, 2mm+1)``."""
    ks = torch.arange(-mm, mm + 1, device=cos_k.device).abs()
    sign = torch.cat(
        [-torch.ones(mm, dtype=cos_k.dtype), torch.zeros(1, dtype=cos_k.dtype),
         torch.ones(mm, dtype=cos_k.dtype)]
    ).to(cos_k.device)  # fmt: skip
    return cos_k[:, ks], sin_k[:, ks] * sign


def _wigner_rows(rotation: torch.Tensor, lmax: int, mmax: int) -> list[torch.Tensor]:
    """Blocks ``D^l(R)[|m| <= mmax, :]``, shape ``(B, 2 min(l, mmax) + 1, 2l+1)``, ``l <= lmax``.

    ``rotation`` has shape ``(B, 3, 3)``.
    """
    R = rotation
    use_b = R[:, 1, 1].abs() > R[:, 1, 2].abs()
    R_b = torch.stack([R[:, :, 0], R[:, :, 2], -R[:, :, 1]], dim=-1)  # R R_x(pi/2)
    R = torch.where(use_b[:, None, None], R_b, R)

    tiny = torch.finfo(R.dtype).tiny
    sin_b = torch.sqrt((R[:, 0, 1] ** 2 + R[:, 2, 1] ** 2).clamp_min(tiny))
    cos_b = R[:, 1, 1]
    cos_a, sin_a = R[:, 2, 1] / sin_b, R[:, 0, 1] / sin_b
    cos_g, sin_g = -R[:, 1, 2] / sin_b, R[:, 1, 0] / sin_b

    ca, sa = _powers(cos_a, sin_a, lmax)
    cb, sb = _powers(cos_b, sin_b, lmax)
    cg, sg = _powers(cos_g, sin_g, lmax)
    consts = _constants(lmax, mmax, R.dtype, R.device)

    blocks = []
    for l in range(lmax + 1):
        mm, n = min(l, mmax), 2 * l + 1
        G, DQ = consts[l]
        feats = torch.cat([cb[:, : l + 1], sb[:, 1 : l + 1]], dim=1)  # (B, 2l+1)
        # J Y(beta) J^T, rows S (and cols reversed); explicit B so that B = 0 works
        t = (feats @ G).view(feats.shape[0], 2, 2 * mm + 1, n)
        if l == 0:
            t = t[:, 0]
        else:
            c, s = _signed_trig(cg, sg, l, l)  # right-multiply by Y(gamma)
            t = torch.addcmul(t[:, 0] * c[:, None, :], t[:, 1], s[:, None, :])
            c, s = _signed_trig(ca, sa, l, mm)  # left-multiply by Y(alpha)
            t = torch.addcmul(t * c[:, :, None], t.flip(-2), s[:, :, None], value=-1.0)
            t = torch.where(use_b[:, None, None], t @ DQ, t)  # chart B: D(R) = D(R Q^T) D(Q)
        blocks.append(t)
    return blocks


def _check_rotation(rotation: torch.Tensor) -> None:
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3), got {tuple(rotation.shape)}")
    if not rotation.is_floating_point():
        raise TypeError(f"rotation must be a floating-point tensor, got {rotation.dtype}")


def wigner_d(rotation: torch.Tensor, lmax: int) -> torch.Tensor:
    r"""Block-diagonal Wigner-D matrix of degrees ``0..lmax`` for rotation matrices.

    It satisfies:

    * ``D(I) = I``;
    * ``D(R1 @ R2) = D(R1) @ D(R2)``;
    * ``D(R^{-1}) = D(R)^{-1} = D(R)^T`` (orthogonal);
    * ``D^1(R) = R`` (e3nn basis, l=1 ordered x, y, z);
    * ``Y(R r) = D(R) Y(r)`` for ``Y = spherical_harmonics(lmax, .)`` (polar axis +y);
    * equals ``e3nn.o3.wigner_D`` at the Euler angles of ``R`` and fairchem's
      ``SO3_Rotation.RotationToWignerDMatrix(R, 0, lmax)`` (to rounding);
    * finite, smooth gradients for every rotation (including ``R y = +-y``).

    Args:
        rotation: proper rotation matrices, shape ``(..., 3, 3)``, float32 or float64.
        lmax: largest degree (any non-negative integer).

    Returns:
        tensor of shape ``(..., (lmax+1)**2, (lmax+1)**2)``, zero outside the diagonal blocks.
    """
    _check_rotation(rotation)
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    lead = rotation.shape[:-2]
    R = rotation.reshape(-1, 3, 3)
    N = (lmax + 1) ** 2
    blocks = _wigner_rows(R, lmax, lmax)
    out = R.new_zeros(R.shape[0], N, N)
    for l, block in enumerate(blocks):
        out[:, l * l : (l + 1) ** 2, l * l : (l + 1) ** 2] = block
    return out.reshape(*lead, N, N)


@cached_constant
def _scatter_positions(lmax: int, mmax: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat positions of the nonzero entries of ``to_edge`` (in ``(K, N)``) and ``from_edge`` (in
    ``(N, K)``), in the order of the concatenated flattened row blocks, and their rescale factors.
    """
    N = (lmax + 1) ** 2
    K = num_coefficients(lmax, mmax)
    pos = {int(i): k for k, i in enumerate(m_major_index(lmax, mmax).tolist())}
    scale = rotate_back_rescale(lmax, mmax).tolist()
    to_pos, from_pos, factors = [], [], []
    for l in range(lmax + 1):
        mm = min(l, mmax)
        for m in range(-mm, mm + 1):
            k = pos[l * l + l + m]
            for n in range(l * l, (l + 1) ** 2):
                to_pos.append(k * N + n)
                from_pos.append(n * K + k)
                factors.append(scale[n])
    return (
        torch.tensor(to_pos, dtype=torch.long),
        torch.tensor(from_pos, dtype=torch.long),
        torch.tensor(factors, dtype=torch.float64),
    )


def edge_rotation(
    rotation: torch.Tensor, lmax: int, mmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Matrices that rotate l-major features into edge frames (m-major, ``|m| <= mmax``) and back.

    With ``D = wigner_d(rotation, lmax)``, ``idx = m_major_index(lmax, mmax)`` and
    ``s = rotate_back_rescale(lmax, mmax)``:

    * ``to_edge = D[:, idx, :]``, shape ``(E, K, (lmax+1)**2)``: ``to_edge @ x`` rotates a global
      feature into the edge frame and reorders it to m-major, dropping ``|m| > mmax``;
    * ``from_edge = diag(s) @ D^T[:, :, idx]``, shape ``(E, (lmax+1)**2, K)``: rotates an m-major
      edge-frame feature back, zero-padding ``|m| > mmax`` and scaling degrees ``l > mmax`` by
      ``sqrt((2l+1)/(2 mmax+1))`` (the reference's ``rotate_inv`` with its rescale);
    * ``to_edge @ from_edge[..., :K]``-style products: ``to_edge @ diag(1/s) @ from_edge = I_K``;
      when ``mmax >= lmax``, ``from_edge @ to_edge = I``.

    Only the ``K`` needed rows of ``D`` are computed; both outputs are contiguous and zero outside
    the degree blocks.

    Args:
        rotation: edge frames, shape ``(E, 3, 3)`` (e.g. from `edge_frames`).
        lmax: largest degree ``L``.
        mmax: largest order ``M`` kept in the edge frame.

    Returns:
        ``(to_edge, from_edge)``.
    """
    _check_rotation(rotation)
    if rotation.dim() != 3:
        raise ValueError(f"rotation must have shape (E, 3, 3), got {tuple(rotation.shape)}")
    if lmax < 0 or mmax < 0:
        raise ValueError(f"lmax and mmax must be >= 0, got {lmax}, {mmax}")
    mmax = min(mmax, lmax)
    E, N, K = rotation.shape[0], (lmax + 1) ** 2, num_coefficients(lmax, mmax)
    to_pos, from_pos, factors = (t.to(rotation.device) for t in _scatter_positions(lmax, mmax))
    blocks = _wigner_rows(rotation, lmax, mmax)
    # flatten, not reshape(E, -1): with E = 0 (no edges) a -1 would be ambiguous
    values = torch.cat([b.flatten(1) for b in blocks], dim=1)  # (E, nnz)
    to_edge = rotation.new_zeros(E, K * N)
    to_edge[:, to_pos] = values
    from_edge = rotation.new_zeros(E, N * K)
    from_edge[:, from_pos] = values * factors.to(rotation.dtype)
    return to_edge.view(E, K, N), from_edge.view(E, N, K)
