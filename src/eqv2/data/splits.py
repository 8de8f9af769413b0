"""Deterministic train/validation/test splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["split_indices"]


def split_indices(
    n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split ``range(n)`` into disjoint index arrays of the given fractions, reproducibly.

    A seeded permutation is cut at ``round(cumsum(fractions) * n)``; each part is returned
    sorted (sequential reads from LMDB; samplers shuffle anyway). Fractions summing to less
    than 1 leave the remainder unused. The same ``(n, fractions, seed)`` always gives the
    same split, on any platform (numpy's PCG64 ``default_rng``).
    """
    if n < 0:
        raise ValueError(f"split_indices: n must be >= 0, got {n}")
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0 or np.any(f < 0) or f.sum() > 1 + 1e-9:
        raise ValueError(
            f"split_indices: fractions {tuple(fractions)} must be non-negative and sum to <= 1"
        )
    perm = np.random.default_rng(seed).permutation(n)
    bounds = np.minimum(np.floor(np.cumsum(f) * n + 0.5).astype(np.int64), n)
    starts = np.concatenate([[0], bounds[:-1]])
    return tuple(np.sort(perm[a:b]) for a, b in zip(starts, bounds, strict=True))
