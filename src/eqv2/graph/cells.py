"""Checks on a cell's periodic lattice vectors (shared by the graph builder and validation)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_cell", "MIN_CELL_VECTOR_LENGTH", "MIN_NORMALISED_VOLUME"]

# A periodic lattice vector shorter than this is treated as zero.
MIN_CELL_VECTOR_LENGTH = 1e-8
# |det| of the periodic rows divided by the product of their lengths (the volume of a unit-edge
# cell with the same angles). Below this the image search would need ~1/x shells per axis.
MIN_NORMALISED_VOLUME = 1e-6

_AXES = "abc"


def _fmt(v: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.6g}" for x in v) + "]"


def check_cell(cell: np.ndarray, pbc: np.ndarray, label: str) -> None:
    """Raise ``ValueError`` if the cell is non-finite or singular on its periodic axes.

    Open (non-periodic) axes may have any finite vector, including zero.

    Args:
        cell: ``(3, 3)`` lattice vectors as rows.
        pbc: ``(3,)`` bool periodicity.
        label: how the structure is named in the message, e.g. ``"Structure 3 ('slab')"``.
    """
    bad = np.argwhere(~np.isfinite(cell))
    if len(bad):
        r, c = bad[0]
        raise ValueError(
            f"{label} has a non-finite cell: cell[{r}, {c}]={cell[r, c]}. "
            "Fix the lattice vectors (use a zero cell for a non-periodic structure)."
        )
    axes = np.flatnonzero(pbc)
    if len(axes) == 0:
        return
    lengths = np.linalg.norm(cell[axes], axis=1)
    for axis, length in zip(axes, lengths, strict=True):
        if length < MIN_CELL_VECTOR_LENGTH:
            raise ValueError(
                f"{label} is periodic along {_AXES[axis]} but its cell vector "
                f"{_AXES[axis]}={_fmt(cell[axis])} has zero length. Set the lattice vector, or "
                f"set pbc=False on axis {axis}."
            )
    rows = cell[axes] / lengths[:, None]
    volume = float(np.sqrt(max(np.linalg.det(rows @ rows.T), 0.0)))
    if volume < MIN_NORMALISED_VOLUME:
        names = ", ".join(f"{_AXES[a]}={_fmt(cell[a])}" for a in axes)
        raise ValueError(
            f"{label} has a singular cell: its periodic cell vectors {names} are (nearly) "
            f"linearly dependent (normalised volume {volume:.3g} < {MIN_NORMALISED_VOLUME:g}). "
            "Fix the lattice vectors, or set pbc=False on the axes that are not periodic."
        )
