"""Surface atoms and symmetry-distinct adsorption sites of a slab (surface normal +z).

Surface atoms: a slab atom is exposed when a probe placed one nearest-neighbour distance ``d``
straight above it has no other atom within ``EXPOSURE_RATIO * d`` (0.85). Above a surface atom
the nearest other atom is at ~1.41 d; the second layer of fcc(111) and (100) is covered (0.61 d
and 0.77 d), while the trough atoms of (110) (1.0 d) and the step-foot row of (211) (0.92 d)
count as exposed, as they are reachable by an adsorbate.

Sites: the in-plane positions of the exposed atoms (with periodic images) are Delaunay
triangulated (scipy). Triangles sharing a circumcentre (within ``MERGE_TOL``) are merged into one
polygon, so the squares of (100) and rectangles of (110) become one 4-fold hollow instead of two
arbitrary triangles. Each exposed atom is an ``ontop`` site, each polygon edge a ``bridge`` (its
midpoint) and each polygon a ``hollow`` (its vertex mean). Sites equal under the slab's symmetry
have the same local environment; they are merged when their fingerprints agree: per element, the
sorted distances from a probe ``FINGERPRINT_HEIGHT`` above the site to the slab atoms within
``FINGERPRINT_RADIUS_NN`` nearest-neighbour distances, equal within ``FINGERPRINT_TOL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list
from scipy.spatial import Delaunay

__all__ = ["SITE_KINDS", "Site", "find_sites", "surface_atoms"]

#: Site kinds in the order sites are listed.
SITE_KINDS: tuple[str, ...] = ("ontop", "bridge", "hollow")

EXPOSURE_RATIO = 0.85
MERGE_TOL = 0.15  # Angstrom, between circumcentres of triangles merged into one polygon
FINGERPRINT_HEIGHT = 1.5  # Angstrom above the site's mean atom height
FINGERPRINT_RADIUS_NN = 2.0  # fingerprint radius, in median nearest-neighbour distances
FINGERPRINT_TOL = 0.05  # Angstrom, largest distance difference of equivalent sites
_NN_SEARCH = 6.0  # Angstrom, nearest-neighbour search radius


@dataclass(frozen=True)
class Site:
    """An adsorption site.

    Attributes:
        kind: ``"ontop"``, ``"bridge"`` or ``"hollow"``.
        position: (3,) Cartesian position: in-plane site position, z the mean height of
            ``atoms``.
        atoms: slab atom indices that define the site (1, 2 or >= 3).
        multiplicity: how many symmetry-equivalent sites of the slab it stands for.
    """

    kind: str
    position: np.ndarray
    atoms: tuple[int, ...]
    multiplicity: int = 1
    fingerprint: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)


def _nearest_neighbour_distances(slab: Atoms) -> np.ndarray:
    i, d = neighbor_list("id", slab, _NN_SEARCH)
    nn = np.full(len(slab), np.inf)
    np.minimum.at(nn, i, d)
    if not np.isfinite(nn).all():
        k = int(np.flatnonzero(~np.isfinite(nn))[0])
        raise ValueError(
            f"slab {slab.get_chemical_formula()}: atom {k} ({slab.get_chemical_symbols()[k]}) has "
            f"no neighbour within {_NN_SEARCH} A; is this a slab?"
        )
    return nn


def _in_plane_shifts(cell: np.ndarray, reach: float) -> np.ndarray:
    """Lattice translations i*a + j*b covering in-plane distances up to ``reach``."""
    a, b = cell[0, :2], cell[1, :2]
    area = abs(a[0] * b[1] - a[1] * b[0])
    widths = (area / np.linalg.norm(b), area / np.linalg.norm(a))  # heights of the parallelogram
    n = [int(np.ceil(reach / w)) + 1 for w in widths]
    ij = np.array([(i, j) for i in range(-n[0], n[0] + 1) for j in range(-n[1], n[1] + 1)])
    return ij @ cell[:2]


def surface_atoms(slab: Atoms, candidates: np.ndarray | None = None) -> np.ndarray:
    """Indices of exposed slab atoms (see the module docstring), in index order.

    Args:
        slab: the slab (pbc in x, y; in-plane cell vectors in the xy plane).
        candidates: boolean mask of atoms that may count (default: all); every atom shades.
    """
    pos = slab.positions
    nn = _nearest_neighbour_distances(slab)
    shifts = _in_plane_shifts(slab.cell.array, float(nn.max()) * 2.0)
    images = (pos[None, :, :] + shifts[:, None, :]).reshape(-1, 3)
    home = int(np.flatnonzero(np.all(shifts == 0.0, axis=1))[0]) * len(slab)
    exposed = []
    for k in range(len(slab)):
        if candidates is not None and not candidates[k]:
            continue
        probe = pos[k] + np.array([0.0, 0.0, nn[k]])
        d = np.linalg.norm(images - probe, axis=1)
        d[home + k] = np.inf  # the atom itself
        if d.min() >= EXPOSURE_RATIO * nn[k]:
            exposed.append(k)
    return np.array(exposed, dtype=int)


def _circumcentre(p: np.ndarray) -> np.ndarray:
    (ax, ay), (bx, by), (cx, cy) = p
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    if abs(d) < 1e-12:
        return p.mean(axis=0)
    a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    return np.array([ux, uy])


def _polygons(points: np.ndarray) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Delaunay polygons (cocircular triangles merged) and their outer edges, as point indices."""
    tri = Delaunay(points)
    simplices = tri.simplices
    centres = np.array([_circumcentre(points[s]) for s in simplices])
    parent = list(range(len(simplices)))

    def root(t: int) -> int:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for t, neighbours in enumerate(tri.neighbors):
        for u in neighbours:
            if u > t and np.linalg.norm(centres[t] - centres[u]) < MERGE_TOL:
                parent[root(u)] = root(t)
    groups: dict[int, list[int]] = {}
    for t in range(len(simplices)):
        groups.setdefault(root(t), []).append(t)
    polygons: list[list[int]] = []
    edges: set[tuple[int, int]] = set()
    for members in groups.values():
        counts: dict[tuple[int, int], int] = {}
        for t in members:
            s = simplices[t]
            for e in ((s[0], s[1]), (s[1], s[2]), (s[0], s[2])):
                key = (int(min(e)), int(max(e)))
                counts[key] = counts.get(key, 0) + 1
        edges.update(e for e, c in counts.items() if c == 1)  # interior edges appear twice
        polygons.append(sorted({int(v) for t in members for v in simplices[t]}))
    return polygons, sorted(edges)


def _fingerprint(
    slab: Atoms, probe: np.ndarray, radius: float, shifts: np.ndarray
) -> dict[int, np.ndarray]:
    images = slab.positions[None, :, :] + shifts[:, None, :]
    d = np.linalg.norm(images - probe, axis=2)
    numbers = np.broadcast_to(slab.numbers, d.shape)
    keep = d < radius
    return {int(z): np.sort(d[keep & (numbers == z)]) for z in np.unique(slab.numbers)}


def _same_environment(f: dict[int, np.ndarray], g: dict[int, np.ndarray]) -> bool:
    return all(
        len(f[z]) == len(g[z]) and (len(f[z]) == 0 or np.abs(f[z] - g[z]).max() <= FINGERPRINT_TOL)
        for z in f
    )


def find_sites(slab: Atoms, unique: bool = True, surface: np.ndarray | None = None) -> list[Site]:
    """Ontop, bridge and hollow sites of ``slab``'s upper surface.

    Args:
        slab: the clean slab (pbc in x, y; in-plane cell vectors in the xy plane).
        unique: merge symmetry-equivalent sites (same local-environment fingerprint); the kept
            site records how many it stands for in ``multiplicity``.
        surface: indices of the surface atoms (default: :func:`surface_atoms` of tag-1 atoms,
            or of all atoms when none is tagged 1).

    Returns:
        Sites ordered by kind (ontop, bridge, hollow), then by fractional in-plane position.
    """
    if surface is None:
        tags = slab.get_tags()
        surface = surface_atoms(slab, tags == 1 if (tags == 1).any() else None)
    if len(surface) == 0:
        raise ValueError(f"slab {slab.get_chemical_formula()}: no exposed surface atom found")
    cell = slab.cell.array
    nn = _nearest_neighbour_distances(slab)
    tile = _in_plane_shifts(cell, float(np.linalg.norm(cell[:2, :2], axis=1).max()))
    pos = slab.positions[surface]
    points = (pos[None, :, :2] + tile[:, None, :2]).reshape(-1, 2)
    point_atom = np.tile(surface, len(tile))
    inverse = np.linalg.inv(cell[:2, :2])

    def in_home_cell(xy: np.ndarray) -> bool:
        frac = np.round(xy @ inverse, 8)
        return bool(np.all((frac >= 0.0) & (frac < 1.0)))

    candidates: list[tuple[str, np.ndarray, tuple[int, ...]]] = []
    for k in surface:
        candidates.append(("ontop", slab.positions[k].copy(), (int(k),)))
    polygons, edges = _polygons(points)
    for kind, groups in (("bridge", [list(e) for e in edges]), ("hollow", polygons)):
        for group in groups:
            xy = points[group].mean(axis=0)
            if not in_home_cell(xy):
                continue
            members = tuple(int(point_atom[v]) for v in group)
            z = float(slab.positions[list(members), 2].mean())
            candidates.append((kind, np.array([xy[0], xy[1], z]), members))

    def order(c: tuple[str, np.ndarray, tuple[int, ...]]) -> tuple:
        frac = np.round(c[1][:2] @ inverse, 6) % 1.0
        return (SITE_KINDS.index(c[0]), round(float(frac[1]), 6), round(float(frac[0]), 6))

    candidates.sort(key=order)
    radius = FINGERPRINT_RADIUS_NN * float(np.median(nn[surface]))
    shifts = _in_plane_shifts(cell, radius + float(np.ptp(slab.positions[:, :2])) + 1.0)
    sites: list[Site] = []
    for kind, position, members in candidates:
        probe = position + np.array([0.0, 0.0, FINGERPRINT_HEIGHT])
        fp = _fingerprint(slab, probe, radius, shifts)
        if unique:
            match = next(
                (
                    i
                    for i, s in enumerate(sites)
                    if s.kind == kind
                    and len(s.atoms) == len(members)
                    and _same_environment(s.fingerprint, fp)
                ),
                None,
            )
            if match is not None:
                old = sites[match]
                sites[match] = Site(
                    old.kind, old.position, old.atoms, old.multiplicity + 1, old.fingerprint
                )
                continue
        sites.append(Site(kind, position, members, 1, fp))
    return sites
