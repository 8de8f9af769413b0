"""Putting an adsorbate on a slab: orientation, height, and clashes with periodic images.

:func:`place_adsorbate` is the one placement rule of eqv2, used by the data generator and by
AdsorbML. The molecule is turned so its body points away from the binding atom(s) (+z), spun
randomly about z and tilted by up to ``MAX_TILT_DEG``; then lifted so the binding atoms are at
least ``bond`` and every other atom at least ``MIN_OTHER_DISTANCE`` from every slab atom (in-plane
minimum image), touching at one. Placements within ``MIN_IMAGE_DISTANCE`` of the adsorbate's own
periodic images are rejected (``None``): small cells with long molecules.
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

__all__ = [
    "MAX_TILT_DEG",
    "MIN_IMAGE_DISTANCE",
    "MIN_OTHER_DISTANCE",
    "align_to_z",
    "place_adsorbate",
    "rotation_about",
]

#: Smallest distance (Å) of a non-binding adsorbate atom from any slab atom.
MIN_OTHER_DISTANCE = 2.0
#: Smallest distance (Å) between the adsorbate and its in-plane periodic images.
MIN_IMAGE_DISTANCE = 2.2
#: Largest random tilt (degrees) of the molecule's axis away from the surface normal.
MAX_TILT_DEG = 25.0


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """The (3, 3) rotation by ``angle`` (radians) about ``axis`` (Rodrigues' formula)."""
    axis = np.asarray(axis, dtype=float)
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def align_to_z(v: np.ndarray) -> np.ndarray:
    """A rotation taking ``v`` onto +z (identity when ``v`` is ~0)."""
    n = np.linalg.norm(v)
    if n < 1e-6:
        return np.eye(3)
    u = v / n
    axis = np.cross(u, [0.0, 0.0, 1.0])
    s = np.linalg.norm(axis)
    if s < 1e-9:
        return np.eye(3) if u[2] > 0 else np.diag([1.0, -1.0, -1.0])
    return rotation_about(axis, math.atan2(s, u[2]))


def _random_orientation(rel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rot = align_to_z(rel.mean(axis=0))
    spin = rotation_about(np.array([0.0, 0.0, 1.0]), rng.uniform(0.0, 2.0 * math.pi))
    phi = rng.uniform(0.0, 2.0 * math.pi)
    tilt = rotation_about(
        np.array([math.cos(phi), math.sin(phi), 0.0]),
        math.radians(rng.uniform(0.0, MAX_TILT_DEG)),
    )
    return rel @ (tilt @ spin @ rot).T


def _clashes_with_images(pos: np.ndarray, cell: np.ndarray) -> bool:
    for i in range(-1, 2):
        for j in range(-1, 2):
            if i == 0 and j == 0:
                continue
            shifted = pos + i * cell[0] + j * cell[1]
            if np.linalg.norm(pos[:, None, :] - shifted[None, :, :], axis=-1).min() < (
                MIN_IMAGE_DISTANCE
            ):
                return True
    return False


def place_adsorbate(
    slab: Atoms,
    adsorbate: Atoms,
    binding: np.ndarray,
    xy: np.ndarray,
    bond: float,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """Adsorbate positions (n, 3) over the in-plane point ``xy`` with a random orientation.

    Args:
        slab: the slab (surface normal +z, in-plane cell vectors in the xy plane).
        adsorbate: the gas-phase molecule.
        binding: indices of its binding atoms.
        xy: in-plane site position (Å).
        bond: distance (Å) of the binding atoms from the nearest slab atom.
        rng: the generator the random orientation draws from (three draws).

    Returns:
        The positions, or None when the molecule would clash with its own periodic images.
    """
    rel = adsorbate.positions - adsorbate.positions[binding].mean(axis=0)
    pos = _random_orientation(rel, rng) + np.array([xy[0], xy[1], 0.0])
    need = np.full(len(pos), MIN_OTHER_DISTANCE)
    need[binding] = bond
    # in-plane minimum-image offsets from each adsorbate atom to each slab atom
    d = slab.positions[None, :, :] - pos[:, None, :]
    d[..., 2] = 0.0
    d_mic, _ = find_mic(d.reshape(-1, 3), slab.cell, slab.pbc)
    r2 = np.sum(d_mic.reshape(d.shape) ** 2, axis=-1)
    gap = need[:, None] ** 2 - r2
    z_need = np.where(
        gap > 0, slab.positions[None, :, 2] + np.sqrt(np.clip(gap, 0.0, None)), -np.inf
    )
    lift = np.max(z_need - pos[:, None, 2])
    if not np.isfinite(lift):  # nothing underneath within reach: rest on the top plane
        lift = slab.positions[:, 2].max() + bond - pos[binding, 2].min()
    pos[:, 2] += lift
    if _clashes_with_images(pos, slab.cell.array):
        return None
    return pos
