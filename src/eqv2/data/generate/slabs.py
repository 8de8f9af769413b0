"""EMT-relaxed fcc slabs: lattice constants, facets, layers, and a random adsorption site."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from ase import Atoms
from ase.build import bulk as ase_bulk
from ase.build import fcc100, fcc110, fcc111, fcc211
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states

from eqv2.adsorption import find_sites, surface_atoms
from eqv2.data.generate.config import EMT_METALS, check_choice

__all__ = ["build_slab", "emt_lattice_constant", "layer_index", "random_site"]

_BUILDERS = {"111": fcc111, "100": fcc100, "110": fcc110, "211": fcc211}


@cache
def emt_lattice_constant(symbol: str) -> float:
    """EMT's own equilibrium fcc lattice constant of ``symbol`` (Angstrom).

    Slabs use it rather than the experimental value so the fixed bottom layers are bulk-like for
    EMT and relaxations do not fight an in-plane strain. Found by golden-section search on the
    one-atom fcc cell around ASE's reference value.
    """
    check_choice("metals", (symbol,), EMT_METALS)
    a_ref = float(reference_states[atomic_numbers[symbol]]["a"])

    def energy(a: float) -> float:
        atoms = ase_bulk(symbol, "fcc", a=a)
        atoms.calc = EMT()
        return float(atoms.get_potential_energy())

    lo, hi = 0.9 * a_ref, 1.1 * a_ref
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    f1, f2 = energy(x1), energy(x2)
    while hi - lo > 1e-6:
        if f1 < f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - ratio * (hi - lo)
            f1 = energy(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + ratio * (hi - lo)
            f2 = energy(x2)
    return round(0.5 * (lo + hi), 6)


def layer_index(positions: np.ndarray, n_layers: int) -> np.ndarray:
    """Layer of each slab atom, 0 = top, from clustered heights.

    ASE tags the (111)/(100)/(110) layers but not (211), where each terrace holds several
    heights; grouping the distinct heights into ``n_layers`` equal runs works for all four.
    """
    z = positions[:, 2]
    order = np.argsort(-z, kind="stable")
    level = np.zeros(len(z), dtype=int)
    current = 0
    for prev, k in zip(order[:-1], order[1:], strict=True):
        if z[prev] - z[k] > 0.1:  # heights within 0.1 A are one plane
            current += 1
        level[k] = current
    n_levels = current + 1
    if n_levels % n_layers:
        raise RuntimeError(f"cannot group {n_levels} atomic planes into {n_layers} layers")
    return level // (n_levels // n_layers)


def build_slab(
    facet: str, symbol: str, size: tuple[int, int], n_layers: int, a: float, vacuum: float
) -> Atoms:
    nx, ny = size
    if facet == "211":
        nx = 3 * math.ceil(nx / 3)  # the (211) step has three rows
        slab = fcc211(symbol, (nx, ny, n_layers), a=a, vacuum=vacuum, orthogonal=True)
    else:
        slab = _BUILDERS[facet](symbol, (nx, ny, n_layers), a=a, vacuum=vacuum)
    slab.info["size"] = (nx, ny)
    return slab


def random_site(
    slab: Atoms, kind: str, layer: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    """In-plane position of a random site of ``kind`` on the top layer, and its kind.

    Sites are AdsorbML's (:func:`eqv2.adsorption.find_sites`, every site, not only distinct
    ones); a slab without a site of ``kind`` falls back to bridge, then ontop.
    """
    sites = find_sites(slab, unique=False, surface=surface_atoms(slab, layer == 0))
    for wanted in (kind, "bridge", "ontop"):
        matching = [site for site in sites if site.kind == wanted]
        if matching:
            site = matching[int(rng.integers(len(matching)))]
            return site.position[:2].copy(), site.kind
    raise RuntimeError(f"slab {slab.get_chemical_formula()}: no adsorption site found")
