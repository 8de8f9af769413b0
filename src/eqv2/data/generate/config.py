"""The generator's parameters: allowed values, :class:`GeneratorConfig`, and their checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from eqv2.adsorption import DEFAULT_ADSORBATE_FILE

__all__ = [
    "EMT_ADSORBATE_ELEMENTS",
    "EMT_METALS",
    "EMT_STATEMENT",
    "FACETS",
    "SPLITS",
    "GeneratorConfig",
    "check_choice",
    "validate",
]

#: Metals with EMT parameters in ASE (all fcc).
EMT_METALS: tuple[str, ...] = ("Ag", "Al", "Au", "Cu", "Ni", "Pd", "Pt")
#: Non-metal elements EMT has parameters for; adsorbates must be made of these only.
EMT_ADSORBATE_ELEMENTS: tuple[str, ...] = ("C", "H", "N", "O")
#: Surface facets the generator builds (ASE ``fcc111``, ``fcc100``, ``fcc110``, ``fcc211``).
FACETS: tuple[str, ...] = ("111", "100", "110", "211")
#: Split names written by :func:`write_dataset`, in order.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Site kinds an adsorbate can be put on.

EMT_STATEMENT = (
    "Energies (eV) and forces (eV/A) come from ASE's EMT calculator, a stand-in for DFT: it is "
    "cheap but not chemically accurate (its H/C/N/O parameters are crude). Use this data to test "
    "pipelines and for demos, never for science."
)


@dataclass(frozen=True)
class GeneratorConfig:
    """Every knob of :func:`generate_dataset`; stored in ``metadata.json``.

    Attributes:
        metals: slab elements to draw from (subset of :data:`EMT_METALS`).
        facets: facets to draw from (subset of :data:`FACETS`, written as ``"111"`` etc.).
        alloy_fraction: probability that a system is a random binary alloy of two of ``metals``.
        alloy_composition: range of the second metal's site fraction in an alloy.
        adsorbates: OC20 adsorbate indices or SMILES (e.g. ``"*OH"``) to draw from; ``None`` means
            every entry of the adsorbate file made of H/C/N/O with at most ``max_adsorbate_atoms``.
        max_adsorbate_atoms: size limit applied when ``adsorbates`` is ``None``.
        layers: numbers of atomic layers to draw from (a (211) "layer" is one 3-row terrace).
        sizes: in-plane repetitions ``(nx, ny)`` to draw from; for (211) ``nx`` is rounded up to a
            multiple of 3 because its step needs three rows.
        vacuum: vacuum above and below the slab (Angstrom; ASE's ``vacuum``).
        fix_bottom_layers: layers counted from the bottom that are fixed (tag 0).
        relax_steps: BFGS step cap per relaxation (frames per relaxation <= relax_steps + 1).
        fmax: BFGS convergence threshold on free atoms (eV/Angstrom).
        rattle_frames: rattled copies added per system, each from a random relaxation frame.
        rattle_std: standard deviation of the Gaussian displacement of free atoms (Angstrom).
        adsorbate_file: path of the OC20 adsorbate extxyz.
    """

    metals: tuple[str, ...] = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")
    facets: tuple[str, ...] = FACETS
    alloy_fraction: float = 0.3
    alloy_composition: tuple[float, float] = (0.2, 0.5)
    adsorbates: tuple[int | str, ...] | None = None
    max_adsorbate_atoms: int = 5
    layers: tuple[int, ...] = (3, 4)
    sizes: tuple[tuple[int, int], ...] = ((2, 2), (3, 3))
    vacuum: float = 7.0
    fix_bottom_layers: int = 2
    relax_steps: int = 20
    fmax: float = 0.05
    rattle_frames: int = 4
    rattle_std: float = 0.05
    adsorbate_file: str = str(DEFAULT_ADSORBATE_FILE)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the parameters (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


def check_choice(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    if len(values) == 0:
        raise ValueError(f"{name} is empty; allowed values are {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise ValueError(
                f"{name}: unknown value {v!r}; allowed values are {', '.join(allowed)}"
            )


def validate(n_systems: int, seed: int, c: GeneratorConfig) -> None:
    if isinstance(n_systems, bool) or not isinstance(n_systems, (int, np.integer)):
        raise ValueError(f"n_systems must be an int >= 1, got {n_systems!r}")
    if n_systems < 1:
        raise ValueError(f"n_systems must be >= 1, got {n_systems}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    check_choice("metals", c.metals, EMT_METALS)
    check_choice("facets", c.facets, FACETS)
    if not 0.0 <= c.alloy_fraction <= 1.0:
        raise ValueError(f"alloy_fraction must be in [0, 1], got {c.alloy_fraction}")
    lo, hi = c.alloy_composition
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"alloy_composition must satisfy 0 < low <= high < 1, got {(lo, hi)}")
    if not c.layers:
        raise ValueError("layers is empty; give layer counts such as (3, 4)")
    if c.fix_bottom_layers < 0:
        raise ValueError(f"fix_bottom_layers must be >= 0, got {c.fix_bottom_layers}")
    for n in c.layers:
        if n <= c.fix_bottom_layers:
            raise ValueError(
                f"layers: {n} layers with fix_bottom_layers={c.fix_bottom_layers} leaves no free "
                "surface layer; every entry of layers must exceed fix_bottom_layers"
            )
    if not c.sizes:
        raise ValueError("sizes is empty; give in-plane repetitions such as ((2, 2), (3, 3))")
    for nx, ny in c.sizes:
        if nx < 1 or ny < 1:
            raise ValueError(f"sizes: entries must be positive (nx, ny), got {(nx, ny)}")
    if c.vacuum <= 0:
        raise ValueError(f"vacuum must be > 0 Angstrom, got {c.vacuum}")
    if c.relax_steps < 0:
        raise ValueError(f"relax_steps must be >= 0, got {c.relax_steps}")
    if c.fmax <= 0:
        raise ValueError(f"fmax must be > 0 eV/A, got {c.fmax}")
    if c.rattle_frames < 0:
        raise ValueError(f"rattle_frames must be >= 0, got {c.rattle_frames}")
    if c.rattle_std < 0:
        raise ValueError(f"rattle_std must be >= 0 Angstrom, got {c.rattle_std}")
    if c.max_adsorbate_atoms < 1:
        raise ValueError(f"max_adsorbate_atoms must be >= 1, got {c.max_adsorbate_atoms}")
