"""Deterministic, atom-balanced batches of structure indices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def epoch_order(num_structures: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of the structures that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_structures)


def atom_balanced_batches(
    order: Sequence[int], natoms: Sequence[int], max_atoms: int, max_structures: int | None = None
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches of at most ``max_atoms`` atoms (and at most
    ``max_structures`` structures); a structure larger than ``max_atoms`` gets a batch alone.

    Keeping the given order makes batches a pure function of the epoch permutation, so a
    resumed run sees exactly the batches an uninterrupted run would.
    """
    if max_atoms < 1:
        raise ValueError(f"max_atoms={max_atoms}: must be at least 1.")
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = 0
    for index in order:
        n = int(natoms[index])
        full = max_structures is not None and len(current) >= max_structures
        if current and (atoms + n > max_atoms or full):
            batches.append(current)
            current, atoms = [], 0
        current.append(int(index))
        atoms += n
    if current:
        batches.append(current)
    return batches
