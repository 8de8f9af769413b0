"""QM9-like molecules labelled by GFN2-xTB, generated here (no downloaded data).

Pipeline per molecule: a random CHONF graph with at most ``max_heavy_atoms`` heavy atoms
(:mod:`.mol_graphs`, deduplicated by canonical SMILES), one RDKit ETKDG conformer optimised with
MMFF94, then a GFN2-xTB single point with tblite (:mod:`.mol_labels`): total energy and forces,
HOMO, LUMO, gap and dipole. Needs the optional extra ``eqv2[molecules]`` (RDKit, tblite).

Determinism: candidate graphs come from one ``numpy`` generator seeded with ``seed``; candidate
``k``'s conformer seed is drawn from ``SeedSequence(seed, spawn_key=(1, k))``; the molecules kept
are the first ``n`` candidates (in candidate order) that succeed. So the output depends only on
the arguments and library versions, not on ``workers``: bit-identical in a process with
``OMP_NUM_THREADS=1`` (checked); with several OpenMP threads (e.g. after
``torch.set_num_threads(2)``, as under eqv2's tests) xTB's sums may differ in the last bits.
Failures are counted by reason
(``GeneratedMolecules.failures``; an unexpected RDKit/tblite exception as ``error:<type>``) and
the failed molecules are left out.

GFN2-xTB is a semi-empirical stand-in for QM9's B3LYP/6-31G(2df,p): its gaps are systematically
different from DFT's, and MMFF94 geometries are not DFT minima. The data exercise the QM9
workflow (targets, heads, normalisers, the 15-minute acceptance run); they are not QM9.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eqv2.data.generate.mol_graphs import HEAVY_VALENCE, random_smiles
from eqv2.data.generate.mol_labels import MoleculeFailure, XtbSettings, molecule_record
from eqv2.data.records import Structure

__all__ = [
    "MOLECULE_STATEMENT",
    "MOLECULE_UNITS",
    "GeneratedMolecules",
    "MoleculeConfig",
    "generate_molecules",
    "summary",
    "write_molecules",
]

MOLECULE_STATEMENT = (
    "GFN2-xTB (tblite) single points on MMFF94 conformers of randomly generated CHONF "
    "molecules; a semi-empirical stand-in for QM9's DFT labels, not QM9 itself."
)
#: Units of what the generator writes (QM9's units where QM9 has the quantity).
MOLECULE_UNITS = {
    "energy": "eV",
    "forces": "eV/A",
    "homo": "meV",
    "lumo": "meV",
    "gap": "meV",
    "mu": "D",
    "dipole": "D",
    "positions": "A",
}

_EXTRA_HINT = "Install the optional extra: pip install 'eqv2[molecules]' (RDKit and tblite)."


@dataclass(frozen=True)
class MoleculeConfig:
    """Knobs of the generator (defaults: QM9-like sizes and composition)."""

    min_heavy_atoms: int = 3
    max_heavy_atoms: int = 9
    #: Relative frequency of each heavy element among drawn atoms (QM9: mostly C, few F).
    element_weights: Mapping[str, float] = field(
        default_factory=lambda: {"C": 0.66, "N": 0.15, "O": 0.16, "F": 0.03}
    )
    #: Heavy-atom count n is drawn with weight 2**n, so most molecules are large, as in QM9.
    size_base: float = 2.0
    xtb: XtbSettings = field(default_factory=XtbSettings)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["element_weights"] = dict(self.element_weights)
        return d


@dataclass
class GeneratedMolecules:
    """The molecules kept, the failure counts by reason and how long it took."""

    seed: int
    config: MoleculeConfig
    molecules: list[Structure]
    failures: dict[str, int]
    candidates: int
    seconds: float

    @property
    def molecules_per_second(self) -> float:
        return len(self.molecules) / self.seconds if self.seconds > 0 else float("nan")


def _validate(n: int, seed: int, config: MoleculeConfig, workers: int) -> None:
    if n < 1:
        raise ValueError(f"n_molecules={n}; ask for at least 1 molecule.")
    if seed < 0:
        raise ValueError(f"seed={seed}; use a non-negative integer.")
    if workers < 1:
        raise ValueError(f"workers={workers}; use 1 or more processes.")
    if not 1 <= config.min_heavy_atoms <= config.max_heavy_atoms:
        raise ValueError(
            f"min_heavy_atoms={config.min_heavy_atoms}, max_heavy_atoms="
            f"{config.max_heavy_atoms}; need 1 <= min <= max."
        )
    unknown = set(config.element_weights) - set(HEAVY_VALENCE)
    if unknown or not config.element_weights:
        raise ValueError(
            f"element_weights {dict(config.element_weights)}: allowed elements are "
            f"{', '.join(HEAVY_VALENCE)} (QM9's heavy atoms)."
        )
    if any(w < 0 for w in config.element_weights.values()) or not any(
        w > 0 for w in config.element_weights.values()
    ):
        raise ValueError("element_weights must be non-negative with at least one positive.")
    if sum(HEAVY_VALENCE[s] > 1 for s, w in config.element_weights.items() if w > 0) == 0:
        raise ValueError("element_weights: give weight to C, N or O (F alone makes only F2).")


def _require_extra() -> None:
    try:
        import rdkit  # noqa: F401
        import tblite.interface  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"The molecule generator needs {exc.name}. {_EXTRA_HINT}") from exc


def _conformer_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(1, k)).generate_state(1)[0] & 0x7FFFFFFF)


def _build(job: tuple[str, int, int, XtbSettings]) -> Structure | str:
    """A labelled molecule, or the failure reason (module level so worker processes can run it)."""
    smiles, k, seed, settings = job
    try:
        return molecule_record(smiles, k, seed, settings)
    except MoleculeFailure as exc:
        return exc.reason
    except Exception as exc:  # noqa: BLE001 - RDKit/tblite errors: count by type, keep going
        return f"error:{type(exc).__name__}"


def generate_molecules(
    n_molecules: int,
    seed: int = 0,
    *,
    config: MoleculeConfig | None = None,
    workers: int = 1,
    max_candidates: int | None = None,
) -> GeneratedMolecules:
    """Generate ``n_molecules`` distinct labelled QM9-like molecules.

    Args:
        n_molecules: molecules to keep.
        seed: fixes the whole output (see the module docstring).
        config: sizes, composition and xTB settings (:class:`MoleculeConfig`).
        workers: processes for embedding and labelling (the result does not depend on it).
        max_candidates: stop after this many graph draws (default ``50 * n_molecules``).

    Returns:
        :class:`GeneratedMolecules`; each molecule's ``info`` has ``mol_id`` (its candidate
        number), ``smiles``, ``n_heavy`` and ``conformer_seed``, its ``targets`` ``homo``,
        ``lumo``, ``gap`` (meV), ``mu`` and ``dipole`` (D).

    Raises:
        ValueError: bad arguments; or fewer than ``n_molecules`` succeeded within
            ``max_candidates`` draws (the message gives the failure counts).
        ImportError: RDKit or tblite missing (install ``eqv2[molecules]``).
    """
    config = config or MoleculeConfig()
    _validate(n_molecules, seed, config, workers)
    _require_extra()
    limit = max_candidates if max_candidates is not None else 50 * n_molecules
    rng = np.random.default_rng(seed)
    sizes = np.arange(config.min_heavy_atoms, config.max_heavy_atoms + 1)
    p_size = config.size_base ** sizes.astype(np.float64)
    p_size /= p_size.sum()
    failures: dict[str, int] = {}
    seen: set[str] = set()
    kept: list[Structure] = []
    k = 0
    start = time.perf_counter()
    # spawn, not fork: a forked child inherits OpenMP/torch thread state (tblite's and torch's
    # pools) mid-lock and can deadlock on its first parallel region
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 else None
    try:
        while len(kept) < n_molecules and k < limit:
            batch: list[tuple[str, int, int, XtbSettings]] = []
            # independent of `workers`, so the candidates tried (and failures) are too
            want = max(16, n_molecules - len(kept))
            while len(batch) < want and k < limit:
                smiles = random_smiles(
                    rng, int(rng.choice(sizes, p=p_size)), config.element_weights
                )
                if smiles is None:
                    failures["invalid_graph"] = failures.get("invalid_graph", 0) + 1
                elif smiles in seen:
                    failures["duplicate"] = failures.get("duplicate", 0) + 1
                else:
                    seen.add(smiles)
                    batch.append((smiles, k, _conformer_seed(seed, k), config.xtb))
                k += 1
            results = pool.map(_build, batch, chunksize=4) if pool else map(_build, batch)
            for res in results:
                if isinstance(res, str):
                    failures[res] = failures.get(res, 0) + 1
                elif len(kept) < n_molecules:
                    kept.append(res)
    finally:
        if pool is not None:
            pool.shutdown()
    seconds = time.perf_counter() - start
    if len(kept) < n_molecules:
        raise ValueError(
            f"only {len(kept)} of {n_molecules} molecules succeeded in {k} candidate graphs "
            f"(failures: {failures}). Fix: raise max_candidates or widen the sizes/elements."
        )
    return GeneratedMolecules(
        seed=int(seed),
        config=config,
        molecules=kept,
        failures=dict(sorted(failures.items())),
        candidates=k,
        seconds=seconds,
    )


def write_molecules(
    gen: GeneratedMolecules,
    out_dir: str | Path,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> dict[str, Path]:
    """Write ``train``/``val``/``test`` extxyz files and ``metadata.json``; return their paths.

    Molecules are split by a permutation seeded with ``gen.seed``. Each file is written
    atomically (temporary name, fsync, rename). Energy and forces are stored so ``ase.io.read``
    returns them through a calculator; ``homo``/``lumo``/``gap``/``mu`` are per-structure
    ``info`` entries, ``dipole`` a 3-vector. A split whose fraction is 0 is not written.
    """
    import ase
    from ase.io import write as ase_write

    from eqv2.data.splits import split_indices
    from eqv2.safe_io import atomic_write_path, write_json

    if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
        raise ValueError(f"fractions={tuple(fractions)}; give three non-negative numbers.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = split_indices(len(gen.molecules), tuple(fractions), seed=gen.seed)
    written: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for name, idx in zip(("train", "val", "test"), parts, strict=True):
        if fractions[("train", "val", "test").index(name)] == 0 or len(idx) == 0:
            continue
        path = out / f"{name}.extxyz"
        with atomic_write_path(path) as tmp:
            ase_write(tmp, [gen.molecules[i].to_atoms() for i in idx], format="extxyz")
        written[name] = path
        counts[name] = len(idx)
    versions = {"ase": ase.__version__, "numpy": np.__version__}
    versions.update(_extra_versions())
    gaps = np.array([m.targets["gap"] for m in gen.molecules])
    metadata = {
        "generator": "eqv2.data.generate.molecules",
        "labels": MOLECULE_STATEMENT,
        "seed": gen.seed,
        "n_molecules": len(gen.molecules),
        "candidates": gen.candidates,
        "failures": gen.failures,
        "seconds": round(gen.seconds, 3),
        "molecules_per_second": round(gen.molecules_per_second, 3),
        "parameters": gen.config.to_dict(),
        "split_fractions": [float(f) for f in fractions],
        "counts": counts,
        "units": MOLECULE_UNITS,
        "gap_mean_std_mev": [float(gaps.mean()), float(gaps.std())],
        "versions": versions,
        "files": sorted(f"{name}.extxyz" for name in written),
    }
    written["metadata"] = write_json(metadata, out / "metadata.json")
    return written


def _extra_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("rdkit", "tblite"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


def summary(gen: GeneratedMolecules) -> str:
    """One line: kept, candidates, failures by reason, rate."""
    fails = ", ".join(f"{k} {v}" for k, v in gen.failures.items()) or "none"
    return (
        f"{len(gen.molecules)} molecules from {gen.candidates} candidate graphs in "
        f"{gen.seconds:.1f} s ({gen.molecules_per_second:.2f} molecules/s); skipped: {fails}"
    )
