"""One generated system: slab, placed adsorbate, EMT relaxation frames and rattled frames.

Each system draws from its own ``numpy`` generator seeded by
``SeedSequence(seed, spawn_key=(0, system_id))``, in a fixed order of draws, so system ``k`` is
the same whatever ``n_systems`` is.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.data import atomic_numbers, covalent_radii
from ase.optimize import BFGS

from eqv2.adsorption import (
    SITE_KINDS,
    binding_indices,
    load_adsorbates,
    place_adsorbate,
    select_adsorbate,
)
from eqv2.data.generate.config import EMT_ADSORBATE_ELEMENTS, GeneratorConfig
from eqv2.data.generate.records import GeneratedSystem, labelled_frame
from eqv2.data.generate.slabs import build_slab, emt_lattice_constant, layer_index, random_site

__all__ = ["adsorbate_pool", "emt_compatible", "generate_system"]

# The binding atom sits at (r_cov(X) + r_cov(M)) * U(low, high) from its nearest metal atom
# (the rest of the placement rule: eqv2.adsorption.placement).
_BOND_SCALE = (0.95, 1.10)
_ROTATION_TRIES = 8


def emt_compatible(atoms: Atoms) -> bool:
    """Whether EMT has parameters for every element of the adsorbate ``atoms``."""
    return set(atoms.get_chemical_symbols()) <= set(EMT_ADSORBATE_ELEMENTS)


def adsorbate_pool(c: GeneratorConfig) -> list[Atoms]:
    """The adsorbates systems draw from, in file order (or the order given).

    Raises:
        ValueError: an unknown or out-of-range entry, an entry EMT cannot label, or no
            adsorbate in the file fits the size limit.
    """
    images = load_adsorbates(c.adsorbate_file)
    if c.adsorbates is None:
        pool = [a for a in images if emt_compatible(a) and len(a) <= c.max_adsorbate_atoms]
        if not pool:
            raise ValueError(
                f"No adsorbate in {c.adsorbate_file} is made of "
                f"{'/'.join(EMT_ADSORBATE_ELEMENTS)} with at most {c.max_adsorbate_atoms} atoms"
            )
        return pool
    pool = []
    for entry in c.adsorbates:
        try:
            atoms = select_adsorbate(images, entry, c.adsorbate_file)
        except ValueError as exc:
            raise ValueError(f"adsorbates: {exc}") from None
        if not emt_compatible(atoms):
            raise ValueError(
                f"adsorbates: {entry!r} ({atoms.get_chemical_formula()}) has elements EMT cannot "
                f"handle; allowed adsorbate elements are {', '.join(EMT_ADSORBATE_ELEMENTS)}"
            )
        pool.append(atoms)
    return pool


def generate_system(
    system_id: int, seed: int, c: GeneratorConfig, pool: list[Atoms]
) -> GeneratedSystem:
    """Build, place, relax (EMT BFGS) and rattle system ``system_id`` (see the module doc)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, system_id)))
    facet = str(rng.choice(c.facets))
    metal = str(rng.choice(c.metals))
    others = [m for m in c.metals if m != metal]
    second = None
    fraction = 0.0
    # Draw both numbers unconditionally so the stream does not depend on the outcome.
    is_alloy = rng.uniform() < c.alloy_fraction
    second_pick = int(rng.integers(max(len(others), 1)))
    fraction_pick = rng.uniform(*c.alloy_composition)
    if is_alloy and others:
        second, fraction = others[second_pick], float(fraction_pick)
    n_layers = int(rng.choice(c.layers))
    size = c.sizes[int(rng.integers(len(c.sizes)))]
    ads_template = pool[int(rng.integers(len(pool)))]
    binding = binding_indices(ads_template)
    site_kind = str(rng.choice(SITE_KINDS))

    a = emt_lattice_constant(metal)
    if second is not None:  # Vegard's law for the alloy's lattice constant
        a = (1.0 - fraction) * a + fraction * emt_lattice_constant(second)

    placed = None
    for attempt in range(4 * _ROTATION_TRIES):
        if attempt % _ROTATION_TRIES == 0:  # (re)build, one size larger after each failure
            grow = attempt // _ROTATION_TRIES
            slab = build_slab(facet, metal, (size[0] + grow, size[1] + grow), n_layers, a, c.vacuum)
            layer = layer_index(slab.positions, n_layers)
            symbols = np.array(slab.get_chemical_symbols())
            if second is not None:
                n_sub = max(1, round(fraction * len(slab)))
                symbols[rng.choice(len(slab), size=n_sub, replace=False)] = second
                slab.set_chemical_symbols(symbols.tolist())
            xy, site = random_site(slab, site_kind, layer, rng)
        radius = np.mean([covalent_radii[atomic_numbers[s]] for s in symbols])
        bond_atom = ads_template.numbers[binding[0]]
        bond = (covalent_radii[bond_atom] + radius) * rng.uniform(*_BOND_SCALE)
        placed = place_adsorbate(slab, ads_template, binding, xy, bond, rng)
        if placed is not None:
            break
    if placed is None:
        raise RuntimeError(
            f"system {system_id}: could not place {ads_template.info['smiles']} without clashing "
            "with its periodic images; use larger sizes or smaller adsorbates"
        )

    n_slab = len(slab)
    fixed = layer >= n_layers - c.fix_bottom_layers
    atoms = Atoms(
        numbers=np.concatenate([slab.numbers, ads_template.numbers]),
        positions=np.concatenate([slab.positions, placed]),
        cell=slab.cell,
        pbc=slab.pbc,
    )
    tags = np.concatenate([np.where(fixed, 0, 1), np.full(len(placed), 2)])
    atoms.set_tags(tags)
    atoms.set_constraint(FixAtoms(indices=np.flatnonzero(fixed)))

    bulk = metal
    if second is not None:  # the realised composition, not the drawn one
        x = float(np.mean(atoms.numbers[:n_slab] == atomic_numbers[second]))
        bulk = f"{metal}{1.0 - x:.2f}{second}{x:.2f}"
    base = {
        "system_id": int(system_id),
        "facet": f"({facet})",
        "bulk": bulk,
        "adsorbate": ads_template.get_chemical_formula(),
        "adsorbate_smiles": str(ads_template.info["smiles"]),
        "adsorbate_index": int(ads_template.info.get("oc20_adsorbate_index", -1)),
        "site": site,
    }

    # Relaxation: every BFGS iterate is a frame (irun yields after each force evaluation).
    atoms.calc = EMT()
    frames: list[Atoms] = []
    converged = False
    opt = BFGS(atoms, logfile=None)
    for step, conv in enumerate(opt.irun(fmax=c.fmax, steps=c.relax_steps)):
        info = dict(base, frame=len(frames), kind="relax", relax_step=step)
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces(apply_constraint=False)
        frames.append(labelled_frame(atoms, energy, forces, info))
        converged = bool(conv)
    n_relax = len(frames)

    # Rattles: Gaussian kicks to the free atoms of random relaxation frames.
    free = ~np.isin(np.arange(len(atoms)), np.flatnonzero(fixed))
    sources = rng.integers(n_relax, size=c.rattle_frames)
    for src in sources:
        rattled = frames[int(src)].copy()
        rattled.positions[free] += rng.normal(0.0, c.rattle_std, size=(int(free.sum()), 3))
        rattled.calc = EMT()
        energy = rattled.get_potential_energy()
        forces = rattled.get_forces(apply_constraint=False)
        info = dict(base, frame=len(frames), kind="rattle", source_frame=int(src))
        frames.append(labelled_frame(rattled, energy, forces, info))

    return GeneratedSystem(
        system_id=int(system_id),
        facet=base["facet"],
        bulk=bulk,
        adsorbate=base["adsorbate"],
        adsorbate_smiles=base["adsorbate_smiles"],
        site=site,
        frames=frames,
        n_relax_frames=n_relax,
        converged=converged,
    )
