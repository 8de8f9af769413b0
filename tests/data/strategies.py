"""Hypothesis strategies and helpers shared by the eqv2.data tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from eqv2.data import Structure


def random_structure(
    seed: int,
    n: int,
    *,
    labels: bool = True,
    symmetric_stress: bool = True,
    decimals: int | None = None,
) -> Structure:
    """A random valid structure; ``decimals`` rounds floats so text files hold them exactly."""
    rng = np.random.default_rng(seed)

    def r(x: np.ndarray) -> np.ndarray:
        return np.round(x, decimals) if decimals is not None else x

    cell = r(np.diag(rng.uniform(4.0, 9.0, 3)) + rng.uniform(-0.5, 0.5, (3, 3)))
    pbc = rng.integers(0, 2, 3).astype(bool)
    stress = rng.normal(size=(3, 3)) * 0.01
    if symmetric_stress:
        stress = (stress + stress.T) / 2
    return Structure(
        numbers=rng.integers(1, 119, n),
        positions=r(rng.uniform(0, 4.0, (n, 3))),
        cell=cell,
        pbc=pbc,
        energy=float(r(rng.normal() * 50)) if labels else None,
        forces=r(rng.normal(size=(n, 3))) if labels else None,
        stress=r(stress) if labels and rng.random() < 0.7 else None,
        tags=rng.integers(0, 3, n),
        fixed=rng.random(n) < 0.3,
        info={"name": f"random-{seed}"},
    )


structures = st.builds(
    random_structure,
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 12),
    labels=st.booleans(),
)


def same_physics(a: Structure, b: Structure) -> bool:
    """Exact equality of everything but ``info`` (readers rewrite source/index)."""
    c = b.copy()
    c.info = dict(a.info)
    return a.equals(c)
