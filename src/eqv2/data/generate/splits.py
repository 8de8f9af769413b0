"""Whole systems to train/val/test, drawn from the seed (test systems are unseen in training)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eqv2.data.generate.config import SPLITS

__all__ = ["split_ids_of"]


def split_ids_of(
    system_ids: Sequence[int], seed: int, fractions: Sequence[float]
) -> dict[str, list[int]]:
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test), got {fractions}"
        )
    n = len(system_ids)
    total = float(sum(fractions))
    sizes = {}
    for name, f in zip(SPLITS[1:], fractions[1:], strict=True):
        sizes[name] = 0 if f == 0 else max(1, round(f / total * n))
    sizes["train"] = n - sizes["val"] - sizes["test"]
    needed = sum(1 for f in fractions if f > 0)
    if sizes["train"] < (1 if fractions[0] > 0 else 0) or n < needed:
        raise ValueError(
            f"{n} systems cannot fill the splits with fractions {tuple(fractions)}; generate at "
            f"least {needed} systems or set unused fractions to 0"
        )
    # Its own stream (spawn_key (1,)), so the split does not shift any system's draws.
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(n)
    shuffled = [int(system_ids[k]) for k in order]
    n_val, n_test = sizes["val"], sizes["test"]
    return {
        "train": sorted(shuffled[n_val + n_test :]),
        "val": sorted(shuffled[:n_val]),
        "test": sorted(shuffled[n_val : n_val + n_test]),
    }
