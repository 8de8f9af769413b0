"""Per-structure reductions over atoms of several structures laid end to end.

A batch of B structures with N atoms in all is stored as (N, ...) arrays where structure b owns
the contiguous rows ``starts[b] : starts[b] + counts[b]`` (the layout of a batched graph).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Segments:
    """The row layout of B structures with ``counts[b]`` atoms each (every count >= 1).

    Args:
        counts: atoms per structure, in batch order.
    """

    def __init__(self, counts: Sequence[int] | np.ndarray) -> None:
        self.counts = np.asarray(counts, dtype=np.int64).reshape(-1)
        if (self.counts < 1).any():
            raise ValueError(f"every structure needs at least one atom, got counts {self.counts}")
        self.starts = np.cumsum(self.counts) - self.counts
        #: (N,) structure of each row.
        self.index = np.repeat(np.arange(len(self.counts)), self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def n_rows(self) -> int:
        """Total number of atoms N."""
        return int(self.counts.sum())

    def sum(self, values: np.ndarray) -> np.ndarray:
        """(B,) sums of a per-atom (N,) array over each structure."""
        return np.bincount(self.index, weights=values, minlength=len(self.counts))

    def dot(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(B,) dot products of two (N, 3) arrays, structure by structure."""
        return self.sum(np.einsum("ij,ij->i", a, b))

    def max(self, values: np.ndarray) -> np.ndarray:
        """(B,) maxima of a per-atom (N,) array over each structure."""
        return np.maximum.reduceat(values, self.starts)

    def max_norm(self, vectors: np.ndarray) -> np.ndarray:
        """(B,) largest per-atom vector length of an (N, 3) array in each structure."""
        return self.max(np.linalg.norm(vectors, axis=1))

    def expand(self, per_structure: np.ndarray) -> np.ndarray:
        """(N, 1) column repeating each structure's value over its atoms (for broadcasting)."""
        return np.asarray(per_structure)[self.index][:, None]

    def rows(self, keep: np.ndarray) -> np.ndarray:
        """(N,) mask of the atoms of the structures selected by the (B,) mask ``keep``."""
        return np.asarray(keep, dtype=bool)[self.index]

    def split(self, array: np.ndarray) -> list[np.ndarray]:
        """One view of ``array`` (N, ...) per structure."""
        return np.split(array, self.starts[1:])
