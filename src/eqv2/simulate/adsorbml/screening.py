"""The AdsorbML loop: place, ML-relax, filter, rank, verify the top k with the reference.

:func:`run_adsorbml` chains the stages of :mod:`eqv2.simulate.adsorbml.stages`:

1. placements (:func:`~eqv2.simulate.adsorbml.placement.generate_placements`);
2. ML relaxation of all of them and the clean slab (one batched call), validity checks
   (:mod:`~eqv2.simulate.adsorbml.validity`; failed relaxations are invalid), ranking by ML energy;
3. the reference minimum: given by the user, or found by relaxing every placement with the
   reference (the baseline the paper compares against; its calls are the cost that the speed-up
   divides);
4. for the k lowest: a reference single point on the ML structure (ML+SP) and/or a reference
   relaxation from it (ML+RX, whose result must be valid too);
5. success and speed-up for k = 1..top_k (:mod:`~eqv2.simulate.adsorbml.report`).

Energies are total energies of the same atoms, so differences equal adsorption-energy
differences. The relaxers are injectable (:mod:`~eqv2.simulate.adsorbml.relaxers`): any callable
taking a list of structures and returning results with ``atoms``, ``energy``, ``converged``,
``steps`` and ``error``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator

from eqv2.simulate.adsorbml.inputs import ADSORBATE_TAG, check_slab, resolve_adsorbate
from eqv2.simulate.adsorbml.placement import generate_placements
from eqv2.simulate.adsorbml.records import Candidate, failure_of
from eqv2.simulate.adsorbml.relaxers import Relaxer, ase_relaxer
from eqv2.simulate.adsorbml.report import SUCCESS_THRESHOLD, TopK, format_table, top_k_rows
from eqv2.simulate.adsorbml.stages import (
    Baseline,
    ml_reference_relaxations,
    ml_relaxation,
    ml_single_points,
    rank,
    reference_baseline,
    relax_and_check,
    top,
)

__all__ = [
    "STRATEGIES",
    "AdsorbMLResult",
    "AdsorbMLSettings",
    "Baseline",
    "Candidate",
    "relax_and_check",
    "run_adsorbml",
]

#: ML+SP: reference single points on the top-k ML structures; ML+RX: reference relaxations.
STRATEGIES: tuple[str, ...] = ("ml+sp", "ml+rx")


@dataclass(frozen=True)
class AdsorbMLSettings:
    """The knobs of one AdsorbML run (see :func:`run_adsorbml` for their meaning)."""

    n_placements: int = 100
    seed: int = 0
    top_k: int = 5
    strategies: tuple[str, ...] = ("ml+sp",)
    reference_fmax: float = 0.05
    reference_steps: int = 300
    relax_clean_slab: bool = True
    success_threshold: float = SUCCESS_THRESHOLD

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
        k = self.top_k
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {k!r}")


@dataclass
class AdsorbMLResult:
    """Everything one AdsorbML run produced.

    Attributes:
        system: e.g. ``"Cu36 + *OH"``.
        candidates: one per placement, in placement order.
        ml_clean_slab: the ML-relaxed clean slab the ML relaxations were checked against.
        baseline: the reference minimum (None when no reference was given).
        strategies: per strategy name, its rows for k = 1..top_k.
        timings: wall seconds per stage.
        settings: the parameters of the run.
    """

    system: str
    candidates: list[Candidate]
    ml_clean_slab: Atoms
    baseline: Baseline | None
    strategies: dict[str, list[TopK]]
    timings: dict[str, float]
    settings: dict[str, Any]

    @property
    def ranked(self) -> list[Candidate]:
        """Valid candidates, lowest ML energy first."""
        return sorted((c for c in self.candidates if c.rank is not None), key=lambda c: c.rank)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        invalid: dict[str, int] = {}
        for c in self.candidates:
            if c.error is not None:
                reasons = ["failed"]
            else:
                reasons = c.validity.reasons if c.validity is not None else []
            for r in reasons:
                invalid[r] = invalid.get(r, 0) + 1
        return {
            "system": self.system,
            "settings": self.settings,
            "n_placements": len(self.candidates),
            "n_valid_ml": sum(c.valid for c in self.candidates),
            "ml_invalid_counts": invalid,
            "ml_converged": sum(c.converged for c in self.candidates),
            "success_threshold_ev": self.settings.get("success_threshold", SUCCESS_THRESHOLD),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "strategies": {k: [r.to_dict() for r in v] for k, v in self.strategies.items()},
            "timings_s": self.timings,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def table(self) -> str:
        """Plain-text summary: counts, the reference minimum and one table per strategy."""
        n_valid = sum(c.valid for c in self.candidates)
        lines = [f"AdsorbML: {self.system}: {len(self.candidates)} placements, {n_valid} valid "
                 "after ML relaxation"]  # fmt: skip
        best = self.ranked[0] if self.ranked else None
        if best is not None:
            lines.append(f"lowest ML energy {best.ml_energy:.4f} eV (placement "
                         f"{best.placement_id}, {best.site})")  # fmt: skip
        if self.baseline is not None:
            e = self.baseline.energy
            calls = self.baseline.calls
            lines.append(
                f"reference minimum {'-' if e is None else f'{e:.4f} eV'} ({self.baseline.source}"
                f"{'' if calls is None else f', {calls} calls'})"
            )
        for name, rows in self.strategies.items():
            lines += ["", format_table(rows, title=name.upper())]
        lines += ["", "timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())]
        return "\n".join(lines)


def run_adsorbml(
    slab: Atoms,
    adsorbate: str | int | Atoms,
    relax: Relaxer,
    reference: Calculator | None = None,
    *,
    n_placements: int = 100,
    seed: int = 0,
    top_k: int = 5,
    strategies: Sequence[str] = ("ml+sp",),
    reference_energy: float | None = None,
    reference_calls: int | None = None,
    reference_relax: Relaxer | None = None,
    reference_fmax: float = 0.05,
    reference_steps: int = 300,
    relax_clean_slab: bool = True,
    placements: Sequence[Atoms] | None = None,
    success_threshold: float = SUCCESS_THRESHOLD,
    log: Callable[[str], None] | None = None,
) -> AdsorbMLResult:
    """Run AdsorbML for one adsorbate on one slab.

    Args:
        slab: the clean slab (tags 0/1, fixed atoms by ``FixAtoms`` or tag 0).
        adsorbate: OC20 SMILES (e.g. ``"*OH"``), OC20 index, file or ``Atoms``
            (see :func:`~eqv2.simulate.adsorbml.inputs.resolve_adsorbate`).
        relax: the ML relaxer, e.g. ``model_relaxer(potential)``.
        reference: the reference calculator (EMT stands in for DFT); None: ML ranking only.
        n_placements, seed: for :func:`generate_placements` (ignored when ``placements`` given).
        top_k: the largest k reported (k = 1..top_k).
        strategies: subset of :data:`STRATEGIES`.
        reference_energy: the reference minimum if known (skips the baseline relaxations).
        reference_calls: the baseline's reference calls, when ``reference_energy`` is given
            (enables the speed-up).
        reference_relax: relaxer for reference relaxations (default: ASE LBFGS, OC20 settings,
            on ``reference`` with ``reference_fmax``/``reference_steps``).
        relax_clean_slab: check surface changes against the relaxed clean slab (paper) rather
            than the initial slab.
        placements: precomputed placements (tags and ``info`` as ``generate_placements`` makes).
        success_threshold: success tolerance in eV.
        log: called with one-line progress messages.

    Returns:
        An :class:`AdsorbMLResult`.

    Raises:
        ValueError: bad slab/adsorbate, unknown strategy, ``top_k < 1``, or
            ``reference_energy``/``strategies`` without a reference.
    """
    say = log or (lambda _msg: None)
    settings = AdsorbMLSettings(
        n_placements, seed, top_k, tuple(strategies), reference_fmax, reference_steps,
        relax_clean_slab, success_threshold,
    )  # fmt: skip
    if reference is None and reference_relax is None and reference_energy is None:
        settings = replace(settings, strategies=())  # ranking only
    strategies = settings.strategies
    if "ml+sp" in strategies and reference is None:
        raise ValueError("ML+SP needs a reference calculator (reference=...)")
    if "ml+rx" in strategies and reference is None and reference_relax is None:
        raise ValueError("ML+RX needs a reference calculator or reference_relax=...")
    check_slab(slab)
    ads = resolve_adsorbate(adsorbate)
    timings: dict[str, float] = {}
    start_all = time.perf_counter()

    with _timed(timings, "placements"):
        if placements is None:
            placements = generate_placements(slab, ads, n_placements, seed=seed)
        placements = list(placements)
    say(f"{len(placements)} placements")

    clean = slab.copy if relax_clean_slab else (lambda: None)
    with _timed(timings, "ml_relax"):
        candidates, ml_slab = ml_relaxation(placements, relax, clean())
        candidates = rank(candidates)
    chosen = top(candidates, top_k)
    n_valid = sum(c.valid for c in candidates)
    say(f"ML: {n_valid} of {len(candidates)} valid ({timings['ml_relax']:.1f} s)")

    ref_relax = reference_relax
    if ref_relax is None and reference is not None:
        ref_relax = ase_relaxer(reference, fmax=reference_fmax, steps=reference_steps)
    baseline: Baseline | None = None
    if reference_energy is not None:
        baseline = Baseline(float(reference_energy), reference_calls, "given")
    elif ref_relax is not None:
        with _timed(timings, "reference_baseline"):
            candidates, baseline = reference_baseline(candidates, ref_relax, clean())
        chosen = top(candidates, top_k)
        say(f"reference baseline: minimum {baseline.energy} eV, {baseline.calls} calls "
            f"({timings['reference_baseline']:.1f} s)")  # fmt: skip

    rows: dict[str, list[TopK]] = {}
    e_min = None if baseline is None else baseline.energy
    b_calls = None if baseline is None else baseline.calls

    def report(name: str, energies: list[float | None], calls: list[int]) -> None:
        rows[name] = top_k_rows(energies, calls, e_min, b_calls, top_k, success_threshold)

    if "ml+sp" in strategies:
        with _timed(timings, "reference_sp"):
            candidates = ml_single_points(candidates, chosen, reference)
        chosen = top(candidates, top_k)
        report("ml+sp", [c.sp_energy for c in chosen], [1] * len(chosen))
    if "ml+rx" in strategies:
        with _timed(timings, "reference_rx"):
            ref_slab = baseline.clean_slab if baseline is not None else None
            if ref_slab is None and relax_clean_slab:
                slab_result = list(ref_relax([slab.copy()]))[0]
                ref_slab = slab_result.atoms if failure_of(slab_result) is None else None
            candidates = ml_reference_relaxations(candidates, chosen, ref_relax, ref_slab)
        chosen = top(candidates, top_k)
        report("ml+rx", [c.rx_energy for c in chosen], [c.rx_calls for c in chosen])
    timings["total"] = time.perf_counter() - start_all

    smiles = str(ads.info.get("smiles", ads.get_chemical_formula()))
    summary = {
        **asdict(settings),
        "n_placements": len(placements),
        "strategies": list(rows),
        "reference": None if reference is None else type(reference).__name__,
        "adsorbate": smiles,
        "binding_indices": list(ads.info["binding_indices"]),
    }
    n_ads = int((placements[0].get_tags() == ADSORBATE_TAG).sum()) if placements else len(ads)
    return AdsorbMLResult(
        system=f"{slab.get_chemical_formula()} + {smiles} ({n_ads} atoms)",
        candidates=candidates,
        ml_clean_slab=ml_slab if ml_slab is not None else slab.copy(),
        baseline=baseline,
        strategies=rows,
        timings=timings,
        settings=summary,
    )


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the block's wall seconds to ``timings[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - start
