"""Initial adsorbate+slab configurations: heuristic (one per distinct site) plus random ones.

As in AdsorbML, the configurations come from two strategies:

- **heuristic**: the adsorbate's binding atom(s) over every symmetry-distinct site
  (:func:`eqv2.adsorption.find_sites`), taken round-robin over the site kinds
  (ontop, bridge, hollow, ontop, ...) so a small budget still samples every kind;
- **random**: over a uniformly random in-plane position.

Each gets a random spin about the surface normal and a tilt of up to 25 degrees, and is lifted
so that the binding atom sits a covalent bond length (``r_cov(adsorbate atom) + mean r_cov(site
atoms)``, times ``bond_scale``) from its nearest slab atom and every other adsorbate atom at least
2 A from the slab (:func:`eqv2.adsorption.place_adsorbate`, shared with the data generator).
A configuration that comes within ``CLASH_RATIO`` covalent-radius sums of a slab atom, within
2.2 A of its own periodic image or (periodic z) within ``IMAGE_GAP`` of the slab's next image,
is rejected and re-drawn (up to ``MAX_TRIES`` times).

Configuration ``k`` of each strategy draws from its own generator
``SeedSequence(seed, spawn_key=(strategy, k))``, so it does not depend on how many are asked for.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from ase.data import covalent_radii
from ase.geometry import get_distances

from eqv2.adsorption import SITE_KINDS, Site, find_sites, place_adsorbate, surface_atoms
from eqv2.simulate.adsorbml.inputs import ADSORBATE_TAG, check_slab

__all__ = ["CLASH_RATIO", "generate_placements", "min_contact_ratio"]

#: Smallest allowed adsorbate-slab distance, as a fraction of the covalent-radius sum.
CLASH_RATIO = 0.75
#: With periodic z: smallest gap between the adsorbate and the next periodic image of the slab.
IMAGE_GAP = 2.0
MAX_TRIES = 16
_HEURISTIC, _RANDOM = 0, 1


def min_contact_ratio(atoms: Atoms) -> float:
    """Smallest adsorbate-slab distance over the covalent-radius sum (tag 2 = adsorbate).

    Periodic images count (minimum image along every periodic direction).
    """
    tags = atoms.get_tags()
    ads, slab = tags == ADSORBATE_TAG, tags != ADSORBATE_TAG
    if not ads.any() or not slab.any():
        return float("inf")
    _, d = get_distances(atoms.positions[ads], atoms.positions[slab], atoms.cell, atoms.pbc)
    radii = covalent_radii[atoms.numbers]
    return float((d / (radii[ads][:, None] + radii[slab][None, :])).min())


def _below_next_slab(slab: Atoms, positions: np.ndarray) -> bool:
    """With periodic z, the adsorbate must stay ``IMAGE_GAP`` below the slab's next image."""
    if not slab.pbc[2]:
        return True
    ceiling = slab.positions[:, 2].min() + slab.cell.array[2, 2] - IMAGE_GAP
    return bool(positions[:, 2].max() <= ceiling)


def _round_robin(sites: list[Site]) -> list[Site]:
    by_kind = [[s for s in sites if s.kind == kind] for kind in SITE_KINDS]
    out = []
    for k in range(max(len(group) for group in by_kind)):
        out.extend(group[k] for group in by_kind if k < len(group))
    return out


def _combine(slab: Atoms, fixed: np.ndarray, adsorbate: Atoms, positions: np.ndarray) -> Atoms:
    atoms = slab.copy()
    atoms.calc = None
    atoms.constraints = []
    atoms.info = {}
    ads = adsorbate.copy()
    ads.positions = positions
    atoms += ads
    atoms.set_tags(np.concatenate([slab.get_tags(), np.full(len(ads), ADSORBATE_TAG)]))
    atoms.set_constraint(FixAtoms(indices=np.flatnonzero(fixed)))
    return atoms


def _try_place(
    slab: Atoms,
    fixed: np.ndarray,
    adsorbate: Atoms,
    binding: np.ndarray,
    xy_radius: tuple[np.ndarray, float] | None,
    random_xy: bool,
    surface: np.ndarray,
    bond_scale: float,
    rng: np.random.Generator,
) -> tuple[Atoms, np.ndarray] | None:
    """A clash-free configuration and its in-plane site position, or None after MAX_TRIES."""
    radii = covalent_radii[slab.numbers]
    ads_radius = float(covalent_radii[adsorbate.numbers[binding]].mean())
    for _ in range(MAX_TRIES):
        if random_xy:
            frac = rng.uniform(0.0, 1.0, size=2)
            xy = frac @ slab.cell.array[:2, :2]
            # bond to the nearest surface atom (in-plane minimum image)
            probe = np.array([[xy[0], xy[1], 0.0]])
            flat = slab.positions[surface].copy()
            flat[:, 2] = 0.0
            _, d = get_distances(probe, flat, slab.cell, [True, True, False])
            site_radius = float(radii[surface][int(np.argmin(d[0]))])
        else:
            xy, site_radius = xy_radius
        bond = (ads_radius + site_radius) * bond_scale
        positions = place_adsorbate(slab, adsorbate, binding, xy, bond, rng)
        if positions is None:
            continue
        atoms = _combine(slab, fixed, adsorbate, positions)
        if min_contact_ratio(atoms) >= CLASH_RATIO and _below_next_slab(slab, positions):
            return atoms, np.asarray(xy, dtype=float)
    return None


def generate_placements(
    slab: Atoms,
    adsorbate: Atoms,
    n_placements: int = 100,
    *,
    seed: int = 0,
    heuristic: bool = True,
    random: bool = True,
    bond_scale: float = 1.0,
) -> list[Atoms]:
    """Initial configurations of ``adsorbate`` on ``slab``.

    Args:
        slab: clean slab (see :func:`~eqv2.simulate.adsorbml.inputs.check_slab`).
        adsorbate: from :func:`~eqv2.simulate.adsorbml.inputs.resolve_adsorbate` (its
            ``info["binding_indices"]`` name the binding atoms).
        n_placements: how many configurations: the heuristic ones first (at most one per
            distinct site), random ones for the rest.
        seed: makes the result deterministic.
        heuristic, random: which strategies to use.
        bond_scale: factor on the covalent bond length used to set the height.

    Returns:
        ``n_placements`` structures (fewer when ``random`` is off and the slab has fewer distinct
        sites, or when placements keep clashing; it raises when none fits): slab atoms first
        with their tags, adsorbate atoms tagged 2, the slab's fixed atoms as ``FixAtoms``.
        ``info``: ``placement_id``, ``placement`` (``"heuristic"`` or ``"random"``), ``site``
        (site kind or ``"random"``), ``site_position`` (in-plane x, y), ``adsorbate``
        (SMILES), ``binding_indices`` (in the combined structure).

    Raises:
        ValueError: bad slab, ``n_placements < 1``, no strategy, or nothing fits.
    """
    fixed = check_slab(slab)
    if isinstance(n_placements, bool) or int(n_placements) != n_placements or n_placements < 1:
        raise ValueError(f"n_placements must be an int >= 1, got {n_placements!r}")
    if not (heuristic or random):
        raise ValueError("choose at least one placement strategy (heuristic or random)")
    if bond_scale <= 0:
        raise ValueError(f"bond_scale must be > 0, got {bond_scale}")
    binding = np.asarray(adsorbate.info.get("binding_indices", [0]), dtype=int)
    tags = slab.get_tags()
    surface = surface_atoms(slab, tags == 1)
    if len(surface) == 0:
        raise ValueError(
            f"slab {slab.get_chemical_formula()}: none of the tag-1 atoms is exposed at the top "
            "surface (+z); tag the top layers 1"
        )
    radii = covalent_radii[slab.numbers]
    placements: list[Atoms] = []
    rejected = 0

    def add(placed: tuple[Atoms, np.ndarray] | None, strategy: str, site: str) -> None:
        nonlocal rejected
        if placed is None:
            rejected += 1
            return
        atoms, xy = placed
        ads_start = len(slab)
        atoms.info.update(
            placement_id=len(placements),
            placement=strategy,
            site=site,
            site_position=np.array([xy[0], xy[1]], dtype=float),
            adsorbate=str(adsorbate.info.get("smiles", adsorbate.get_chemical_formula())),
            binding_indices=[int(ads_start + b) for b in binding],
        )
        placements.append(atoms)

    if heuristic:
        sites = _round_robin(find_sites(slab, surface=surface))
        for k, site in enumerate(sites[:n_placements]):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_HEURISTIC, k)))
            radius = float(radii[list(site.atoms)].mean())
            placed = _try_place(
                slab, fixed, adsorbate, binding, (site.position[:2], radius), False, surface,
                bond_scale, rng,
            )  # fmt: skip
            add(placed, "heuristic", site.kind)
    if random:
        k = 0
        while len(placements) < n_placements and k < n_placements + MAX_TRIES:
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_RANDOM, k)))
            placed = _try_place(
                slab, fixed, adsorbate, binding, None, True, surface, bond_scale, rng
            )
            add(placed, "random", "random")
            k += 1
    if not placements:
        raise ValueError(
            f"could not place {adsorbate.get_chemical_formula()} on slab "
            f"{slab.get_chemical_formula()} without clashes ({rejected} attempts rejected): use a "
            "larger cell (the adsorbate must stay 2.2 A from its periodic images) or more vacuum"
        )
    return placements
