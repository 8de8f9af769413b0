"""An OC20-like dataset generator that needs no internet, labelled by ASE's EMT calculator.

It builds fcc (111)/(100)/(110)/(211) slabs of Cu, Ag, Au, Ni, Pd, Pt and Al (and random binary
alloys of them), puts one OC20 adsorbate made of H, C, N and O on an ontop, bridge or hollow site,
fixes the bottom layers, tags atoms the OC20 way (0 fixed subsurface, 1 free surface, 2 adsorbate)
and relaxes each system with BFGS on EMT. Every relaxation frame is kept with its energy and forces,
and rattled copies of some frames are added, so S2EF (frames), IS2RE (initial structure -> relaxed
energy) and IS2RS (initial -> relaxed positions) targets all exist.

EMT is a stand-in for DFT: it is cheap and smooth, but its H/C/N/O parameters are crude, so the
numbers are not chemistry. The data exist to exercise the training and evaluation pipeline.

The output is a deterministic function of the seed and the parameters: each system draws from its
own ``numpy`` generator seeded by ``SeedSequence(seed, spawn_key=(0, system_id))`` (never the
global RNG), so system ``k`` is the same whatever ``n_systems`` is.

The parts: parameters and their checks (:mod:`.config`), slabs (:mod:`.slabs`), one system
(:mod:`.systems`), the returned records (:mod:`.records`), splits (:mod:`.splits`) and files
(:mod:`.writer`); adsorbates, sites and placement are :mod:`eqv2.adsorption`'s, shared with
AdsorbML.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eqv2.adsorption import DEFAULT_ADSORBATE_FILE, SITE_KINDS, load_adsorbates
from eqv2.data.generate.config import (
    EMT_ADSORBATE_ELEMENTS,
    EMT_METALS,
    EMT_STATEMENT,
    FACETS,
    SPLITS,
    GeneratorConfig,
    validate,
)
from eqv2.data.generate.records import GeneratedDataset, GeneratedSystem
from eqv2.data.generate.slabs import emt_lattice_constant
from eqv2.data.generate.systems import adsorbate_pool, generate_system
from eqv2.data.generate.writer import write_dataset

__all__ = [
    "DEFAULT_ADSORBATE_FILE",
    "EMT_ADSORBATE_ELEMENTS",
    "EMT_METALS",
    "EMT_STATEMENT",
    "FACETS",
    "SITE_KINDS",
    "SPLITS",
    "GeneratedDataset",
    "GeneratedSystem",
    "GeneratorConfig",
    "emt_lattice_constant",
    "generate_dataset",
    "load_adsorbates",
    "write_dataset",
]


def generate_dataset(
    n_systems: int,
    seed: int = 0,
    *,
    metals: Sequence[str] = GeneratorConfig.metals,
    facets: Sequence[str] = GeneratorConfig.facets,
    alloy_fraction: float = GeneratorConfig.alloy_fraction,
    alloy_composition: tuple[float, float] = GeneratorConfig.alloy_composition,
    adsorbates: Sequence[int | str] | None = None,
    max_adsorbate_atoms: int = GeneratorConfig.max_adsorbate_atoms,
    layers: Sequence[int] = GeneratorConfig.layers,
    sizes: Sequence[tuple[int, int]] = GeneratorConfig.sizes,
    vacuum: float = GeneratorConfig.vacuum,
    fix_bottom_layers: int = GeneratorConfig.fix_bottom_layers,
    relax_steps: int = GeneratorConfig.relax_steps,
    fmax: float = GeneratorConfig.fmax,
    rattle_frames: int = GeneratorConfig.rattle_frames,
    rattle_std: float = GeneratorConfig.rattle_std,
    adsorbate_file: str | Path = DEFAULT_ADSORBATE_FILE,
) -> GeneratedDataset:
    """Generate ``n_systems`` OC20-like adsorbate+slab systems labelled by EMT.

    Each system: a random facet, metal (or binary alloy with probability ``alloy_fraction``),
    layer count and size; one adsorbate on a random ontop/bridge/hollow site with a random
    rotation and bond length; bottom ``fix_bottom_layers`` layers fixed (``FixAtoms``); tags 0
    (fixed), 1 (free slab atoms), 2 (adsorbate); a BFGS relaxation (at most ``relax_steps``
    steps, to ``fmax``) whose every frame is kept, plus ``rattle_frames`` rattled frames. See
    :class:`GeneratorConfig` for the knobs.

    Every frame's ``info`` holds ``system_id``, ``frame`` (index within the system), ``kind``
    (``"relax"`` or ``"rattle"``), ``facet`` (e.g. ``"(111)"``), ``bulk`` (e.g. ``"Cu"`` or
    ``"Cu0.75Pd0.25"``), ``adsorbate`` (formula), ``adsorbate_smiles``, ``adsorbate_index``,
    ``site``; rattled frames also ``source_frame``.

    The result is bit-identical for the same arguments on the same machine and library versions.

    Raises:
        ValueError: an argument is out of range or names an unknown metal, facet or adsorbate
            (the message names the argument and the allowed values).
        FileNotFoundError: the adsorbate file is missing.
    """
    config = GeneratorConfig(
        metals=tuple(metals),
        facets=tuple(str(f) for f in facets),
        alloy_fraction=float(alloy_fraction),
        alloy_composition=(float(alloy_composition[0]), float(alloy_composition[1])),
        adsorbates=None if adsorbates is None else tuple(adsorbates),
        max_adsorbate_atoms=int(max_adsorbate_atoms),
        layers=tuple(int(n) for n in layers),
        sizes=tuple((int(s[0]), int(s[1])) for s in sizes),
        vacuum=float(vacuum),
        fix_bottom_layers=int(fix_bottom_layers),
        relax_steps=int(relax_steps),
        fmax=float(fmax),
        rattle_frames=int(rattle_frames),
        rattle_std=float(rattle_std),
        adsorbate_file=str(adsorbate_file),
    )
    validate(n_systems, seed, config)
    pool = adsorbate_pool(config)
    systems = [generate_system(i, seed, config, pool) for i in range(n_systems)]
    return GeneratedDataset(seed=int(seed), config=config, systems=systems)
