"""Relaxation trajectories on disk: one extxyz file per structure, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ase import Atoms
from ase.io import write

from eqv2.safe_io import atomic_write_path

__all__ = ["trajectory_path", "write_trajectory"]


def trajectory_path(directory: str | Path, index: int) -> Path:
    """``directory/relax_<index>.extxyz`` (index zero-padded to 5 digits, so names sort)."""
    return Path(directory) / f"relax_{index:05d}.extxyz"


def write_trajectory(path: str | Path, frames: Sequence[Atoms]) -> Path:
    """Write ``frames`` (each with its energy and forces) to ``path`` as extxyz, atomically.

    A crash mid-write leaves no partial file under ``path``.
    """
    with atomic_write_path(path) as tmp:
        write(tmp, list(frames), format="extxyz")
    return Path(path)
