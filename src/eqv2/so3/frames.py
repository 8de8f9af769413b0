"""Edge frames: rotations taking each edge direction onto +y.

The rotation ``R`` with ``R @ u = (0, 1, 0)`` for a unit edge direction ``u`` is fixed only up to a
roll about +y. Two rules are offered:

``roll="deterministic"`` (default)
    Let ``F = I`` if ``u_y >= 0`` and ``F = diag(1, -1, -1)`` (a half turn about x) otherwise, and
    ``a = F u`` (so ``a_y >= 0``). ``R = R_min(a) F`` where ``R_min(a)`` is the smallest rotation
    taking ``a`` to +y (about the axis ``a x y``):

        R_min(a) = [[1 - k a_x^2,  -a_x,  -k a_x a_z],
                    [a_x,           a_y,   a_z      ],
                    [-k a_x a_z,   -a_z,   1 - k a_z^2]],   k = 1 / (1 + a_y).

    Since ``1 + a_y >= 1`` there is no cancellation or division by a small number for any
    direction, edges along the axes included; the frame is a smooth function of ``u`` on each open
    hemisphere ``u_y > 0`` and ``u_y < 0`` (a continuous choice over the whole sphere does not
    exist). The same input always gives the same output.

``roll="random"``
    The reference's algorithm (fairchem ``init_edge_rot_mat``): a helper vector drawn as
    ``torch.rand - 0.5`` (from ``generator`` if given, else the global RNG, consuming it exactly as
    the reference does), replaced by one of two 90 degree rotated copies when those are less
    aligned with the edge, then completed by cross products. With the same RNG state it returns the
    reference's matrices, so frames are distributed identically.
"""

from __future__ import annotations

import torch

__all__ = ["edge_frames"]


def _deterministic(u: torch.Tensor) -> torch.Tensor:
    flip = u[:, 1] < 0
    sign = torch.where(flip, -1.0, 1.0).to(u.dtype)
    ax, ay, az = u[:, 0], u[:, 1] * sign, u[:, 2] * sign
    k = 1.0 / (1.0 + ay)
    kxz = k * ax * az
    rows = torch.stack(
        [
            torch.stack([1.0 - k * ax * ax, -ax, -kxz], dim=-1),
            torch.stack([ax, ay, az], dim=-1),
            torch.stack([-kxz, -az, 1.0 - k * az * az], dim=-1),
        ],
        dim=-2,
    )
    # R = R_min(a) F with F = diag(1, s, s): scale columns 1 and 2 by the sign.
    col = torch.stack([torch.ones_like(sign), sign, sign], dim=-1)
    return rows * col[:, None, :]


def _random(u: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    helper = torch.rand(u.shape, dtype=u.dtype, device=u.device, generator=generator) - 0.5
    helper = helper / torch.sqrt(torch.sum(helper**2, dim=1, keepdim=True))
    # Two copies turned by 90 degrees (about z, then about x); take whichever is least aligned.
    hx, hy, hz = helper.unbind(-1)
    turned_z = torch.stack([-hy, hx, hz], dim=-1)
    turned_x = torch.stack([hx, -hz, hy], dim=-1)

    def overlap(v: torch.Tensor) -> torch.Tensor:
        return torch.sum(v * u, dim=1, keepdim=True).abs()

    helper = torch.where(overlap(helper) > overlap(turned_z), turned_z, helper)
    # the x-turned copy is formed from the original draw, as in the reference
    helper = torch.where(overlap(helper) > overlap(turned_x), turned_x, helper)
    # (the reference asserts the final overlap is < 0.99; one of three mutually rotated unit
    # vectors always is far enough from u that this cannot fail in practice, so no host sync here)
    e_z = torch.cross(u, helper, dim=1)
    e_z = e_z / torch.sqrt(torch.sum(e_z**2, dim=1, keepdim=True))
    e_z = e_z / torch.sqrt(torch.sum(e_z**2, dim=1, keepdim=True))
    e_y = torch.cross(u, e_z, dim=1)
    e_y = e_y / torch.sqrt(torch.sum(e_y**2, dim=1, keepdim=True))
    # rows of the rotation: (e_z, u, -e_y)
    return torch.stack([e_z, u, -e_y], dim=1)


def edge_frames(
    edge_vec: torch.Tensor,
    roll: str = "deterministic",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Proper rotations ``R (E, 3, 3)`` with ``R @ (edge_vec / |edge_vec|) = (0, 1, 0)``.

    Properties: ``R R^T = I``, ``det R = 1``, ``R u = +y``; with ``roll="deterministic"`` the
    output depends only on the input (see the module docstring for the rule), with
    ``roll="random"`` it reproduces the reference's random frames for the same RNG state.

    Args:
        edge_vec: edge vectors, shape ``(E, 3)``; must be non-zero.
        roll: ``"deterministic"`` or ``"random"``.
        generator: RNG for ``roll="random"`` (default: the global RNG, like the reference).

    Returns:
        tensor of shape ``(E, 3, 3)``. Gradients flow through the edge direction (the reference
        detaches its frames; call ``.detach()`` to mimic it).
    """
    if edge_vec.dim() != 2 or edge_vec.shape[-1] != 3:
        raise ValueError(f"edge_vec must have shape (E, 3), got {tuple(edge_vec.shape)}")
    if not edge_vec.is_floating_point():
        raise TypeError(f"edge_vec must be floating point, got {edge_vec.dtype}")
    u = edge_vec / torch.sqrt(torch.sum(edge_vec**2, dim=1, keepdim=True))
    if roll == "deterministic":
        return _deterministic(u)
    if roll == "random":
        return _random(u, generator)
    raise ValueError(f"roll must be 'deterministic' or 'random', got {roll!r}")
