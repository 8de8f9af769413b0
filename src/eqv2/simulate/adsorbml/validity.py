"""AdsorbML's physical constraints on a relaxed adsorbate+slab structure.

A relaxed configuration is discarded when (Lan et al., npj Comput. Mater. 2023, "AdsorbML"):

- **desorbed**: no adsorbate atom is bonded to any slab atom (with the cushion
  ``DESORPTION_SCALE``), so the adsorbate floats away;
- **dissociated**: the bond graph of the adsorbate atoms differs from the initial placement's
  (a bond broke or formed);
- **surface changed**: the adsorbate reconstructed the surface: a slab-slab bond in the relaxed
  adslab is absent from the clean slab even with the cushion ``SURFACE_CHANGE_SCALE``, or a clean
  slab bond is absent from the adslab even with the cushion. The clean slab is the relaxed clean
  slab when given (the paper's choice), else the initial placement's slab;
- **intercalated**: an adsorbate atom is bonded to a fixed subsurface (tag-0) atom, i.e. it went
  into the slab.

Bonds: atoms i and j are bonded when ``d_ij < scale * (r_i + r_j) + 2 * BOND_SKIN`` with ``r``
ASE's covalent radii. ``scale`` is 1.0 except where a cushion is named above (1.5 for both, the
values of the AdsorbML code), and ``BOND_SKIN = 0.3`` A per atom is the skin that ASE's
``NeighborList`` adds by default, which the reference implementation inherits; without it many
OC20 gas-phase adsorbate geometries (bonds at 1.0-1.12 covalent sums) would not even be
connected. Distances use the minimum image of the periodic cell. Tags identify the parts: 2
adsorbate, 1 free slab, 0 fixed slab.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from eqv2.simulate.adsorbml.inputs import ADSORBATE_TAG

__all__ = [
    "BOND_SKIN",
    "DESORPTION_SCALE",
    "SURFACE_CHANGE_SCALE",
    "Validity",
    "check_validity",
    "connectivities",
    "connectivity",
    "has_surface_changed",
    "is_desorbed",
    "is_dissociated",
    "is_intercalated",
]

BOND_SKIN = 0.3
DESORPTION_SCALE = 1.5
SURFACE_CHANGE_SCALE = 1.5


@dataclass(frozen=True)
class Validity:
    """Which constraints a relaxed structure violates (all False: valid)."""

    desorbed: bool = False
    dissociated: bool = False
    surface_changed: bool = False
    intercalated: bool = False

    @property
    def valid(self) -> bool:
        """True when no constraint is violated."""
        return not self.reasons

    @property
    def reasons(self) -> list[str]:
        """Names of the violated constraints, e.g. ``["desorbed"]``."""
        names = ("desorbed", "dissociated", "surface_changed", "intercalated")
        return [name for name in names if getattr(self, name)]


def connectivity(atoms: Atoms, scale: float = 1.0) -> np.ndarray:
    """(N, N) bool bond matrix: ``d_ij < scale * (r_i + r_j) + 2 * BOND_SKIN`` (minimum image).

    Bonds of an atom to its own periodic image are ignored (the diagonal is False).
    """
    return connectivities(atoms, (scale,))[scale]


def connectivities(atoms: Atoms, scales: tuple[float, ...]) -> dict[float, np.ndarray]:
    """`connectivity` at several scales from one neighbour search (at the largest scale)."""
    n = len(atoms)
    out = {scale: np.zeros((n, n), dtype=bool) for scale in scales}
    if n == 0:
        return out
    radii = covalent_radii[atoms.numbers]
    cutoffs = max(scales) * radii + BOND_SKIN
    i, j, d = neighbor_list("ijd", atoms, cutoffs.tolist(), self_interaction=False)
    for scale, bonds in out.items():
        # the same test neighbor_list applies, per pair: d < c_i + c_j
        keep = d < (scale * radii[i] + BOND_SKIN) + (scale * radii[j] + BOND_SKIN)
        bonds[i[keep], j[keep]] = True
        np.fill_diagonal(bonds, False)
    return out


def _split(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    tags = atoms.get_tags()
    ads = np.flatnonzero(tags == ADSORBATE_TAG)
    if len(ads) == 0:
        raise ValueError(
            f"{atoms.get_chemical_formula()}: no adsorbate atom (tag 2); validity checks need "
            "the adsorbate tagged 2 and slab atoms 0/1"
        )
    return ads, np.flatnonzero(tags != ADSORBATE_TAG)


def is_desorbed(final: Atoms, scale: float = DESORPTION_SCALE) -> bool:
    """True when no adsorbate atom is bonded (with cushion ``scale``) to a slab atom."""
    ads, slab = _split(final)
    return not connectivity(final, scale)[np.ix_(ads, slab)].any()


def is_dissociated(initial: Atoms, final: Atoms) -> bool:
    """True when the adsorbate's bond graph changed between ``initial`` and ``final``."""
    ads, _ = _split(initial)
    _check_same(initial, final)
    return not np.array_equal(connectivity(initial[ads]), connectivity(final[ads]))


def has_surface_changed(
    final: Atoms, clean_slab: Atoms, scale: float = SURFACE_CHANGE_SCALE
) -> bool:
    """True when slab-slab bonds of ``final`` and ``clean_slab`` disagree beyond the cushion.

    Args:
        final: relaxed adsorbate+slab; its slab atoms (tags 0/1) come first in the same order
            as ``clean_slab``'s atoms.
        clean_slab: the (relaxed) clean slab.
    """
    _, slab = _split(final)
    _check_clean_slab(final, slab, clean_slab)
    scales = (1.0, scale)
    adslab, clean = connectivities(final[slab], scales), connectivities(clean_slab, scales)
    return _surface_changed(adslab, clean, scale)


def is_intercalated(final: Atoms) -> bool:
    """True when an adsorbate atom is bonded to a fixed subsurface (tag-0) atom."""
    ads, _ = _split(final)
    return _intercalated(connectivity(final), ads, final.get_tags())


def _surface_changed(
    adslab: dict[float, np.ndarray], clean: dict[float, np.ndarray], cushion: float
) -> bool:
    """Slab-slab bonds (at scales 1 and ``cushion``) formed or broken beyond the cushion."""
    formed = adslab[1.0] & ~clean[cushion]
    broken = clean[1.0] & ~adslab[cushion]
    return bool(formed.any() or broken.any())


def _intercalated(bonds: np.ndarray, ads: np.ndarray, tags: np.ndarray) -> bool:
    frozen = np.flatnonzero(tags == 0)
    return bool(len(frozen) and bonds[np.ix_(ads, frozen)].any())


def _check_same(initial: Atoms, final: Atoms) -> None:
    if len(initial) != len(final) or not np.array_equal(initial.numbers, final.numbers):
        raise ValueError(
            f"initial {initial.get_chemical_formula()} and final {final.get_chemical_formula()} "
            "are not the same atoms in the same order"
        )


def check_validity(initial: Atoms, final: Atoms, clean_slab: Atoms | None = None) -> Validity:
    """All four constraints for one relaxation.

    Equal to calling the four ``is_*``/``has_*`` functions, with two neighbour searches
    instead of eight: the final structure's bonds at every scale come from one search and
    are cut into blocks, and the clean slab's bonds are cached (screening checks every
    candidate against the same slab).

    Args:
        initial: the placement that was relaxed (tags 0/1 slab, 2 adsorbate).
        final: the relaxed structure (same atoms, same order).
        clean_slab: the relaxed clean slab; default: the slab atoms of ``initial``.
    """
    _check_same(initial, final)
    ads, slab = _split(final)
    if clean_slab is None:
        clean_slab = initial[slab]
    _check_clean_slab(final, slab, clean_slab)
    bonds = connectivities(final, (1.0, DESORPTION_SCALE, SURFACE_CHANGE_SCALE))
    slab_bonds = {s: bonds[s][np.ix_(slab, slab)] for s in (1.0, SURFACE_CHANGE_SCALE)}
    return Validity(
        desorbed=not bonds[DESORPTION_SCALE][np.ix_(ads, slab)].any(),
        dissociated=not np.array_equal(connectivity(initial[ads]), bonds[1.0][np.ix_(ads, ads)]),
        surface_changed=_surface_changed(
            slab_bonds, _clean_slab_bonds(clean_slab), SURFACE_CHANGE_SCALE
        ),
        intercalated=_intercalated(bonds[1.0], ads, final.get_tags()),
    )


def _check_clean_slab(final: Atoms, slab: np.ndarray, clean_slab: Atoms) -> None:
    if len(clean_slab) != len(slab) or not np.array_equal(clean_slab.numbers, final.numbers[slab]):
        raise ValueError(
            f"clean slab {clean_slab.get_chemical_formula()} does not match the slab atoms of "
            f"{final.get_chemical_formula()} (same elements in the same order needed)"
        )


_CLEAN_SLAB_CACHE: dict[bytes, dict[float, np.ndarray]] = {}
_CLEAN_SLAB_CACHE_SIZE = 32


def _clean_slab_bonds(clean_slab: Atoms) -> dict[float, np.ndarray]:
    """Bonds of a clean slab at scales 1 and ``SURFACE_CHANGE_SCALE``, cached by content."""
    key = b"".join(
        np.ascontiguousarray(a).tobytes()
        for a in (clean_slab.numbers, clean_slab.positions, clean_slab.cell.array, clean_slab.pbc)
    )
    bonds = _CLEAN_SLAB_CACHE.get(key)
    if bonds is None:
        bonds = connectivities(clean_slab, (1.0, SURFACE_CHANGE_SCALE))
        if len(_CLEAN_SLAB_CACHE) >= _CLEAN_SLAB_CACHE_SIZE:
            _CLEAN_SLAB_CACHE.pop(next(iter(_CLEAN_SLAB_CACHE)))
        _CLEAN_SLAB_CACHE[key] = bonds
    return bonds
