"""Helpers for the stress-head checkpoint fixtures (../shared/reference/checkpoints)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms

FAMILIES = ["omat", "dens"]


def expected(checkpoints_dir: Path, family: str) -> dict:
    return json.loads((checkpoints_dir / f"{family}_stress_small.expected.json").read_text())


def structures(exp: dict) -> list[Atoms]:
    return [
        Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
        for s in exp["structures"]
    ]


def max_errors(results: list[dict], energies, forces, stresses) -> tuple[np.ndarray, ...]:
    """Per-structure |ΔE|, max |ΔF| and max |Δσ| against reference lists."""
    d_e = np.array([abs(r["energy"] - e) for r, e in zip(results, energies, strict=True)])
    d_f = np.array(
        [np.abs(r["forces"] - np.asarray(f)).max() for r, f in zip(results, forces, strict=True)]
    )
    d_s = np.array(
        [np.abs(r["stress"] - np.asarray(s)).max() for r, s in zip(results, stresses, strict=True)]
    )
    return d_e, d_f, d_s
