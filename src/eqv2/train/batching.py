"""Deterministic, atom-balanced batches of structure indices, and their split over processes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def epoch_order(num_structures: int, seed: int, epoch: int) -> np.ndarray:
    """A permutation of the structures that depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_structures)


def atom_balanced_batches(
    order: Sequence[int],
    natoms: Sequence[int],
    max_atoms: int,
    max_structures: int | None = None,
    min_structures: int = 1,
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches of at most ``max_atoms`` atoms (and at most
    ``max_structures`` structures); a structure larger than ``max_atoms`` gets a batch alone.

    ``min_structures`` (the number of processes sharing each batch) takes precedence over both
    limits: a batch closes only once it has that many structures, and a shorter last batch
    joins the one before it, so every process gets at least one structure of every batch.

    Keeping the given order makes batches a pure function of the epoch permutation, so a
    resumed run sees exactly the batches an uninterrupted run would.

    Raises:
        ValueError: ``max_atoms`` or ``min_structures`` below 1, or fewer structures than
            ``min_structures``.
    """
    if max_atoms < 1:
        raise ValueError(f"max_atoms={max_atoms}: must be at least 1.")
    if min_structures < 1:
        raise ValueError(f"min_structures={min_structures}: must be at least 1.")
    if 0 < len(order) < min_structures:
        raise ValueError(
            f"{len(order)} structure(s) cannot give each of {min_structures} processes one: "
            "use fewer processes or more training data."
        )
    batches: list[list[int]] = []
    current: list[int] = []
    atoms = 0
    for index in order:
        n = int(natoms[index])
        full = max_structures is not None and len(current) >= max_structures
        if len(current) >= min_structures and (atoms + n > max_atoms or full):
            batches.append(current)
            current, atoms = [], 0
        current.append(int(index))
        atoms += n
    if current:
        if len(current) < min_structures and batches:
            batches[-1].extend(current)
        else:
            batches.append(current)
    return batches


def split_batch(batch: Sequence[int], natoms: Sequence[int], num_parts: int) -> list[list[int]]:
    """Share one batch among ``num_parts`` processes with balanced atom counts.

    Largest structures first, each to the part with the fewest atoms so far (ties: the lower
    part); each part keeps the batch's order. A pure function of its arguments, so every
    process computes the same split without communicating. With at least ``num_parts``
    structures no part is empty.
    """
    if num_parts < 1:
        raise ValueError(f"num_parts={num_parts}: must be at least 1.")
    if num_parts == 1:
        return [list(batch)]
    loads = [0] * num_parts
    owner = [0] * len(batch)
    by_size = sorted(range(len(batch)), key=lambda k: (-int(natoms[batch[k]]), k))
    for k in by_size:
        part = min(range(num_parts), key=lambda p: (loads[p], p))
        owner[k] = part
        loads[part] += int(natoms[batch[k]])
    return [[int(batch[k]) for k in range(len(batch)) if owner[k] == p] for p in range(num_parts)]
