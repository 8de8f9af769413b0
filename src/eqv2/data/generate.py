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
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase import Atoms
from ase.build import bulk as ase_bulk
from ase.build import fcc100, fcc110, fcc111, fcc211
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.io import write as ase_write
from ase.optimize import BFGS

from eqv2.adsorption import (
    DEFAULT_ADSORBATE_FILE,
    binding_indices,
    find_sites,
    load_adsorbates,
    place_adsorbate,
    surface_atoms,
)
from eqv2.safe_io import atomic_write_path

__all__ = [
    "DEFAULT_ADSORBATE_FILE",
    "EMT_ADSORBATE_ELEMENTS",
    "EMT_METALS",
    "FACETS",
    "SPLITS",
    "GeneratedDataset",
    "GeneratedSystem",
    "GeneratorConfig",
    "emt_lattice_constant",
    "generate_dataset",
    "load_adsorbates",
    "write_dataset",
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
SITE_KINDS: tuple[str, ...] = ("ontop", "bridge", "hollow")

EMT_STATEMENT = (
    "Energies (eV) and forces (eV/A) come from ASE's EMT calculator, a stand-in for DFT: it is "
    "cheap but not chemically accurate (its H/C/N/O parameters are crude). Use this data to test "
    "pipelines and for demos, never for science."
)

_BUILDERS = {"111": fcc111, "100": fcc100, "110": fcc110, "211": fcc211}

# The binding atom sits at (r_cov(X) + r_cov(M)) * U(low, high) from its nearest metal atom
# (the rest of the placement rule: eqv2.adsorption.placement).
_BOND_SCALE = (0.95, 1.10)
_ROTATION_TRIES = 8


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


@dataclass
class GeneratedSystem:
    """One initial system, its relaxation and its rattled frames.

    ``frames`` holds the relaxation frames (``kind="relax"``, frame 0 is the initial structure)
    followed by the rattled ones (``kind="rattle"``). Each frame has a
    :class:`~ase.calculators.singlepoint.SinglePointCalculator` with the EMT ``energy`` and the
    raw ``forces`` on all atoms (fixed ones included; use ``apply_constraint=False`` to read them).
    """

    system_id: int
    facet: str
    bulk: str
    adsorbate: str
    adsorbate_smiles: str
    site: str
    frames: list[Atoms]
    n_relax_frames: int
    converged: bool

    @property
    def relax_frames(self) -> list[Atoms]:
        """The relaxation trajectory, initial structure first."""
        return self.frames[: self.n_relax_frames]

    @property
    def energy_relaxed(self) -> float:
        """EMT energy of the last relaxation frame (eV)."""
        return float(self.frames[self.n_relax_frames - 1].get_potential_energy())

    @property
    def initial(self) -> Atoms:
        """The initial structure with ``info["energy_relaxed"]`` and ``arrays["pos_relaxed"]``."""
        atoms = _copy_frame(self.frames[0])
        atoms.info["kind"] = "initial"
        atoms.info["energy_relaxed"] = self.energy_relaxed
        atoms.info["relax_converged"] = self.converged
        atoms.new_array("pos_relaxed", self.relaxed.positions.copy())
        return atoms

    @property
    def relaxed(self) -> Atoms:
        """The last relaxation frame (``info["kind"] = "relaxed"``)."""
        atoms = _copy_frame(self.frames[self.n_relax_frames - 1])
        atoms.info["kind"] = "relaxed"
        atoms.info["energy_relaxed"] = self.energy_relaxed
        atoms.info["relax_converged"] = self.converged
        return atoms


@dataclass
class GeneratedDataset:
    """The generator's output: systems (with their frames) and the parameters that made them."""

    seed: int
    config: GeneratorConfig
    systems: list[GeneratedSystem] = field(default_factory=list)

    @property
    def s2ef_frames(self) -> list[Atoms]:
        """All frames (relaxation and rattled) of all systems, in system order."""
        return [frame for system in self.systems for frame in system.frames]

    @property
    def is2re(self) -> list[tuple[Atoms, Atoms]]:
        """``(initial, relaxed)`` per system; ``initial.info["energy_relaxed"]`` is the target."""
        return [(system.initial, system.relaxed) for system in self.systems]

    @property
    def is2rs(self) -> list[tuple[Atoms, Atoms]]:
        """``(initial, relaxed)`` per system; the relaxed positions are the target."""
        return self.is2re

    def split_ids(self, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, list[int]]:
        """Assign whole systems to train/val/test (so test systems are unseen), from the seed.

        Each split with a positive fraction gets at least one system; its size is otherwise
        ``round(fraction * n_systems)``, train taking the rest.
        """
        return _split_ids([s.system_id for s in self.systems], self.seed, fractions)

    def frames_of(self, system_ids: Sequence[int]) -> list[Atoms]:
        """S2EF frames of the given systems, in the order given."""
        by_id = {s.system_id: s for s in self.systems}
        return [frame for i in system_ids for frame in by_id[i].frames]


# ---------------------------------------------------------------------------------------------
# Public functions


@cache
def emt_lattice_constant(symbol: str) -> float:
    """EMT's own equilibrium fcc lattice constant of ``symbol`` (Angstrom).

    Slabs use it rather than the experimental value so the fixed bottom layers are bulk-like for
    EMT and relaxations do not fight an in-plane strain. Found by golden-section search on the
    one-atom fcc cell around ASE's reference value.
    """
    _check_choice("metals", (symbol,), EMT_METALS)
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
    _validate(n_systems, seed, config)
    pool = _adsorbate_pool(config)
    systems = [_generate_system(i, seed, config, pool) for i in range(n_systems)]
    return GeneratedDataset(seed=int(seed), config=config, systems=systems)


def write_dataset(
    ds: GeneratedDataset,
    out_dir: str | Path,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> dict[str, Path]:
    """Write ``ds`` under ``out_dir``; return ``{name: path}`` of the files written.

    Files (each written atomically: temporary name, fsync, rename):

    - ``train.extxyz``, ``val.extxyz``, ``test.extxyz``: S2EF frames, split by system;
    - ``is2re_train.extxyz`` etc.: per system two frames, the initial structure
      (``kind="initial"``, ``info["energy_relaxed"]``, ``arrays["pos_relaxed"]``) then the relaxed
      one (``kind="relaxed"``); they serve IS2RE and IS2RS;
    - ``metadata.json``: seed, parameters, counts, split system ids, EMT lattice constants and
      the statement that EMT stands in for DFT.

    Energies and forces are stored so ``ase.io.read`` returns them through a
    ``SinglePointCalculator``; fixed atoms come back as ``FixAtoms`` (extxyz ``move_mask``), tags
    through the ``tags`` column. A split whose fraction is 0 is not written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = ds.split_ids(fractions)
    by_id = {s.system_id: s for s in ds.systems}
    written: dict[str, Path] = {}
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        ids = splits[name]
        if not ids:
            continue
        frames = ds.frames_of(ids)
        pairs = [a for i in ids for a in (by_id[i].initial, by_id[i].relaxed)]
        for label, images in ((name, frames), (f"is2re_{name}", pairs)):
            path = out / f"{label}.extxyz"
            with atomic_write_path(path) as tmp:
                ase_write(tmp, images, format="extxyz")
            written[label] = path
        counts[name] = {
            "systems": len(ids),
            "frames": len(frames),
            "atoms": int(sum(len(a) for a in frames)),
        }
    metadata = {
        "generator": "eqv2.data.generate",
        "labels": EMT_STATEMENT,
        "seed": ds.seed,
        "n_systems": len(ds.systems),
        "n_frames": len(ds.s2ef_frames),
        "parameters": ds.config.to_dict(),
        "split_fractions": [float(f) for f in fractions],
        "splits": splits,
        "counts": counts,
        "emt_lattice_constants": {m: emt_lattice_constant(m) for m in ds.config.metals},
        "adsorbate_file_md5": _md5(ds.config.adsorbate_file),
        "units": {"energy": "eV", "forces": "eV/A", "positions": "A"},
        "keys": {
            "energy": "energy (SinglePointCalculator; extxyz info 'energy')",
            "forces": "forces on all atoms, fixed ones included (extxyz array 'forces')",
            "fixed": "FixAtoms (extxyz 'move_mask' False)",
            "tags": "0 fixed subsurface, 1 free surface, 2 adsorbate",
            "is2re": "info energy_relaxed, arrays pos_relaxed on the initial frame",
        },
        "systems": [
            {
                "system_id": s.system_id,
                "facet": s.facet,
                "bulk": s.bulk,
                "adsorbate": s.adsorbate,
                "adsorbate_smiles": s.adsorbate_smiles,
                "site": s.site,
                "n_atoms": len(s.frames[0]),
                "n_relax_frames": s.n_relax_frames,
                "n_frames": len(s.frames),
                "converged": s.converged,
                "energy_relaxed": s.energy_relaxed,
            }
            for s in ds.systems
        ],
        "versions": {"ase": ase.__version__, "numpy": np.__version__},
        "files": sorted(f"{label}.extxyz" for label in written),
    }
    path = out / "metadata.json"
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    written["metadata"] = path
    return written


# ---------------------------------------------------------------------------------------------
# Validation and inputs


def _check_choice(name: str, values: Sequence[str], allowed: Sequence[str]) -> None:
    if len(values) == 0:
        raise ValueError(f"{name} is empty; allowed values are {', '.join(allowed)}")
    for v in values:
        if v not in allowed:
            raise ValueError(
                f"{name}: unknown value {v!r}; allowed values are {', '.join(allowed)}"
            )


def _validate(n_systems: int, seed: int, c: GeneratorConfig) -> None:
    if isinstance(n_systems, bool) or not isinstance(n_systems, (int, np.integer)):
        raise ValueError(f"n_systems must be an int >= 1, got {n_systems!r}")
    if n_systems < 1:
        raise ValueError(f"n_systems must be >= 1, got {n_systems}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_choice("metals", c.metals, EMT_METALS)
    _check_choice("facets", c.facets, FACETS)
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


def _emt_compatible(atoms: Atoms) -> bool:
    return set(atoms.get_chemical_symbols()) <= set(EMT_ADSORBATE_ELEMENTS)


def _adsorbate_pool(c: GeneratorConfig) -> list[Atoms]:
    """The adsorbates systems draw from, in file order (or the order given)."""
    images = load_adsorbates(c.adsorbate_file)
    if c.adsorbates is None:
        pool = [a for a in images if _emt_compatible(a) and len(a) <= c.max_adsorbate_atoms]
        if not pool:
            raise ValueError(
                f"No adsorbate in {c.adsorbate_file} is made of "
                f"{'/'.join(EMT_ADSORBATE_ELEMENTS)} with at most {c.max_adsorbate_atoms} atoms"
            )
        return pool
    by_smiles = {str(a.info["smiles"]): a for a in images}
    pool = []
    for entry in c.adsorbates:
        if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
            if not 0 <= entry < len(images):
                raise ValueError(
                    f"adsorbates: index {entry} out of range; the file has {len(images)} entries "
                    f"(0..{len(images) - 1})"
                )
            atoms = images[int(entry)]
        elif isinstance(entry, str) and entry in by_smiles:
            atoms = by_smiles[entry]
        else:
            raise ValueError(
                f"adsorbates: unknown entry {entry!r}; give OC20 indices or SMILES such as "
                f"{', '.join(list(by_smiles)[:6])}, ... (see {c.adsorbate_file})"
            )
        if not _emt_compatible(atoms):
            raise ValueError(
                f"adsorbates: {entry!r} ({atoms.get_chemical_formula()}) has elements EMT cannot "
                f"handle; allowed adsorbate elements are {', '.join(EMT_ADSORBATE_ELEMENTS)}"
            )
        pool.append(atoms)
    return pool


def _md5(path: str) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _split_ids(
    system_ids: Sequence[int], seed: int, fractions: Sequence[float]
) -> dict[str, list[int]]:
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(
            f"fractions must be three non-negative numbers (train, val, test), got {fractions}"
        )
    n = len(system_ids)
    total = float(sum(fractions))
    sizes = {}
    for name, f in zip(SPLITS[1:], fractions[1:], strict=True):
        sizes[name] = 0 if f == 0 else max(1, round(f / total * n))
    sizes["train"] = n - sizes["val"] - sizes["test"]
    needed = sum(1 for f in fractions if f > 0)
    if sizes["train"] < (1 if fractions[0] > 0 else 0) or n < needed:
        raise ValueError(
            f"{n} systems cannot fill the splits with fractions {tuple(fractions)}; generate at "
            f"least {needed} systems or set unused fractions to 0"
        )
    # Its own stream (spawn_key (1,)), so the split does not shift any system's draws.
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(n)
    shuffled = [int(system_ids[k]) for k in order]
    n_val, n_test = sizes["val"], sizes["test"]
    return {
        "train": sorted(shuffled[n_val + n_test :]),
        "val": sorted(shuffled[:n_val]),
        "test": sorted(shuffled[n_val : n_val + n_test]),
    }


# ---------------------------------------------------------------------------------------------
# Building one system


def _layer_index(positions: np.ndarray, n_layers: int) -> np.ndarray:
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


def _build_slab(
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


def _random_site(
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


def _frame(atoms: Atoms, energy: float, forces: np.ndarray, info: dict[str, Any]) -> Atoms:
    """A labelled snapshot: a copy with a SinglePointCalculator and the given ``info``."""
    frame = atoms.copy()
    frame.info = dict(info)
    frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces))
    return frame


def _copy_frame(frame: Atoms) -> Atoms:
    out = frame.copy()
    results = frame.calc.results
    out.calc = SinglePointCalculator(
        out, energy=float(results["energy"]), forces=np.array(results["forces"])
    )
    return out


def _generate_system(
    system_id: int, seed: int, c: GeneratorConfig, pool: list[Atoms]
) -> GeneratedSystem:
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
            slab = _build_slab(
                facet, metal, (size[0] + grow, size[1] + grow), n_layers, a, c.vacuum
            )
            layer = _layer_index(slab.positions, n_layers)
            symbols = np.array(slab.get_chemical_symbols())
            if second is not None:
                n_sub = max(1, round(fraction * len(slab)))
                symbols[rng.choice(len(slab), size=n_sub, replace=False)] = second
                slab.set_chemical_symbols(symbols.tolist())
            xy, site = _random_site(slab, site_kind, layer, rng)
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
        frames.append(_frame(atoms, energy, forces, info))
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
        frames.append(_frame(rattled, energy, forces, info))

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
