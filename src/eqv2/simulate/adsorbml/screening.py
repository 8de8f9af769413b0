"""The AdsorbML loop: place, ML-relax, filter, rank, verify the top k with the reference.

1. Generate placements (:func:`~eqv2.simulate.adsorbml.placement.generate_placements`).
2. Relax them all, and the clean slab, with the ML relaxer (one batched call).
3. Drop invalid relaxations (:mod:`~eqv2.simulate.adsorbml.validity`; failed ones too) and rank
   the rest by ML energy.
4. For the k lowest: a reference single point on the ML structure (ML+SP) and/or a reference
   relaxation from it (ML+RX, whose result must be valid too).
5. Compare with the reference minimum: given by the user, or found by relaxing every placement
   with the reference (the baseline the paper compares against; its calls are the cost that the
   speed-up divides). Energies are total energies of the same atoms, so differences equal
   adsorption-energy differences.

The relaxers are injectable (:mod:`~eqv2.simulate.adsorbml.relaxers`): any callable taking a
list of structures and returning results with ``atoms``, ``energy``, ``converged``, ``steps``
and ``error``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator

from eqv2.simulate.adsorbml.inputs import ADSORBATE_TAG, check_slab, resolve_adsorbate
from eqv2.simulate.adsorbml.placement import generate_placements
from eqv2.simulate.adsorbml.relaxers import (
    Relaxer,
    RelaxOutcome,
    ase_relaxer,
    calls_of,
    single_points,
)
from eqv2.simulate.adsorbml.report import (
    SUCCESS_THRESHOLD,
    TopK,
    format_table,
    top_k_rows,
)
from eqv2.simulate.adsorbml.validity import Validity, check_validity

__all__ = [
    "STRATEGIES",
    "AdsorbMLResult",
    "Baseline",
    "Candidate",
    "relax_and_check",
    "run_adsorbml",
]

#: ML+SP: reference single points on the top-k ML structures; ML+RX: reference relaxations.
STRATEGIES: tuple[str, ...] = ("ml+sp", "ml+rx")


@dataclass
class Candidate:
    """One placement and what happened to it.

    Attributes:
        placement_id, placement, site: from the placement's ``info``.
        initial: the placement.
        relaxed: the ML-relaxed structure (None if the relaxer returned no atoms).
        ml_energy: ML energy after relaxation (eV), None on failure.
        converged, steps: of the ML relaxation.
        error: why the ML relaxation failed, or None.
        validity: the constraints checked on the ML relaxation (None on failure).
        rank: position among valid candidates by ML energy (0 = lowest), None if invalid.
        sp_energy, sp_error: ML+SP reference single point (top k only).
        rx_energy, rx_calls, rx_validity, rx_error, rx_relaxed: ML+RX reference relaxation
            (top k only).
        reference_energy, reference_calls, reference_validity, reference_error: the baseline's
            reference relaxation of this placement (when the baseline was computed).
    """

    placement_id: int
    placement: str
    site: str
    initial: Atoms
    relaxed: Atoms | None = None
    ml_energy: float | None = None
    converged: bool = False
    steps: int = 0
    error: str | None = None
    validity: Validity | None = None
    rank: int | None = None
    sp_energy: float | None = None
    sp_error: str | None = None
    rx_energy: float | None = None
    rx_calls: int = 0
    rx_validity: Validity | None = None
    rx_error: str | None = None
    rx_relaxed: Atoms | None = None
    reference_energy: float | None = None
    reference_calls: int = 0
    reference_validity: Validity | None = None
    reference_error: str | None = None

    @property
    def valid(self) -> bool:
        """ML relaxation succeeded and passed every constraint."""
        return self.error is None and self.validity is not None and self.validity.valid

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no structures)."""

        def flags(v: Validity | None) -> list[str] | None:
            return None if v is None else v.reasons

        return {
            "placement_id": self.placement_id,
            "placement": self.placement,
            "site": self.site,
            "ml_energy": self.ml_energy,
            "ml_converged": self.converged,
            "ml_steps": self.steps,
            "ml_error": self.error,
            "ml_valid": self.valid,
            "ml_invalid_reasons": flags(self.validity),
            "rank": self.rank,
            "sp_energy": self.sp_energy,
            "sp_error": self.sp_error,
            "rx_energy": self.rx_energy,
            "rx_calls": self.rx_calls,
            "rx_invalid_reasons": flags(self.rx_validity),
            "rx_error": self.rx_error,
            "reference_energy": self.reference_energy,
            "reference_calls": self.reference_calls,
            "reference_invalid_reasons": flags(self.reference_validity),
            "reference_error": self.reference_error,
        }


@dataclass
class Baseline:
    """The reference minimum the strategies are judged against.

    Attributes:
        energy: minimum reference energy over valid reference relaxations (or the given value);
            None when no reference relaxation was valid.
        calls: reference calculator calls the baseline took (None when given without a count).
        source: ``"reference relaxations"`` or ``"given"``.
        placement_id: the placement whose reference relaxation is the minimum.
        n_valid: valid reference relaxations.
        relaxed: the reference-relaxed placements (empty when given).
        clean_slab: the reference-relaxed clean slab (None when not computed).
    """

    energy: float | None
    calls: int | None
    source: str
    placement_id: int | None = None
    n_valid: int = 0
    relaxed: list[Atoms] = field(default_factory=list)
    clean_slab: Atoms | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "energy": self.energy,
            "calls": self.calls,
            "source": self.source,
            "placement_id": self.placement_id,
            "n_valid": self.n_valid,
        }


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


def relax_and_check(
    starts: Sequence[Atoms],
    relax: Relaxer,
    clean_slab: Atoms | None,
    *,
    initials: Sequence[Atoms] | None = None,
) -> tuple[list[RelaxOutcome], list[Validity | None], Atoms | None]:
    """Relax ``starts`` (and ``clean_slab`` in the same call) and check each result's validity.

    Args:
        starts: structures to relax.
        relax: the relaxer.
        clean_slab: relaxed along (first in the call) and used as the surface-change reference;
            None: each initial's own slab atoms are the reference.
        initials: the placements the validity checks compare with (default: ``starts``).

    Returns:
        ``(results, validities, relaxed_clean_slab)``; a validity is None where the relaxation
        failed; the relaxed clean slab is None if not asked for or if its relaxation failed.
    """
    initials = list(starts) if initials is None else list(initials)
    batch = ([clean_slab] if clean_slab is not None else []) + list(starts)
    results = list(relax(batch))
    if len(results) != len(batch):
        raise RuntimeError(f"the relaxer returned {len(results)} results for {len(batch)} inputs")
    slab_ref = None
    if clean_slab is not None:
        slab_result = results.pop(0)
        slab_ref = slab_result.atoms if _failure(slab_result) is None else None
    validities: list[Validity | None] = []
    for initial, result in zip(initials, results, strict=True):
        ok = _failure(result) is None and result.atoms is not None
        validities.append(check_validity(initial, result.atoms, slab_ref) if ok else None)
    return results, validities, slab_ref


def _failure(result: RelaxOutcome) -> str | None:
    if result.error is not None:
        return str(result.error)
    if result.energy is None or not math.isfinite(result.energy):
        return f"non-finite or missing energy ({result.energy})"
    return None


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
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    if isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {top_k!r}")
    if reference is None and reference_relax is None and reference_energy is None:
        strategies = ()  # ranking only
    if "ml+sp" in strategies and reference is None:
        raise ValueError("ML+SP needs a reference calculator (reference=...)")
    if "ml+rx" in strategies and reference is None and reference_relax is None:
        raise ValueError("ML+RX needs a reference calculator or reference_relax=...")
    check_slab(slab)
    ads = resolve_adsorbate(adsorbate)
    timings: dict[str, float] = {}
    start_all = time.perf_counter()

    t = time.perf_counter()
    if placements is None:
        placements = generate_placements(slab, ads, n_placements, seed=seed)
    placements = list(placements)
    timings["placements"] = time.perf_counter() - t
    say(f"{len(placements)} placements")

    # ML relaxations and validity
    t = time.perf_counter()
    clean = slab.copy() if relax_clean_slab else None
    results, validities, ml_slab = relax_and_check(placements, relax, clean)
    timings["ml_relax"] = time.perf_counter() - t
    candidates = []
    for k, (initial, result, validity) in enumerate(
        zip(placements, results, validities, strict=True)
    ):
        candidates.append(
            Candidate(
                placement_id=int(initial.info.get("placement_id", k)),
                placement=str(initial.info.get("placement", "given")),
                site=str(initial.info.get("site", "unknown")),
                initial=initial,
                relaxed=result.atoms,
                ml_energy=None if _failure(result) else float(result.energy),
                converged=bool(result.converged),
                steps=int(result.steps),
                error=_failure(result),
                validity=validity,
            )
        )
    ranked = sorted((c for c in candidates if c.valid), key=lambda c: (c.ml_energy, c.placement_id))
    for r, c in enumerate(ranked):
        c.rank = r
    top = ranked[:top_k]
    say(f"ML: {len(ranked)} of {len(candidates)} valid ({timings['ml_relax']:.1f} s)")

    ref_relax = reference_relax
    if ref_relax is None and reference is not None:
        ref_relax = ase_relaxer(reference, fmax=reference_fmax, steps=reference_steps)

    baseline: Baseline | None = None
    if reference_energy is not None:
        baseline = Baseline(float(reference_energy), reference_calls, "given")
    elif ref_relax is not None:
        t = time.perf_counter()
        ref_results, ref_valid, ref_slab = relax_and_check(
            placements, ref_relax, slab.copy() if relax_clean_slab else None
        )
        timings["reference_baseline"] = time.perf_counter() - t
        best_id, best_e, n_valid = None, None, 0
        for c, result, validity in zip(candidates, ref_results, ref_valid, strict=True):
            c.reference_error = _failure(result)
            c.reference_energy = None if c.reference_error else float(result.energy)
            c.reference_calls = calls_of(result)
            c.reference_validity = validity
            if validity is not None and validity.valid:
                n_valid += 1
                if best_e is None or c.reference_energy < best_e:
                    best_id, best_e = c.placement_id, c.reference_energy
        baseline = Baseline(
            energy=best_e,
            calls=sum(c.reference_calls for c in candidates),
            source="reference relaxations",
            placement_id=best_id,
            n_valid=n_valid,
            relaxed=[r.atoms for r in ref_results],
            clean_slab=ref_slab,
        )
        say(f"reference baseline: minimum {best_e} eV, {baseline.calls} calls "
            f"({timings['reference_baseline']:.1f} s)")  # fmt: skip

    rows: dict[str, list[TopK]] = {}
    e_min = None if baseline is None else baseline.energy
    b_calls = None if baseline is None else baseline.calls
    if "ml+sp" in strategies:
        t = time.perf_counter()
        for c, sp in zip(top, single_points([c.relaxed for c in top], reference), strict=True):
            c.sp_energy, c.sp_error = sp.energy, sp.error
        timings["reference_sp"] = time.perf_counter() - t
        rows["ml+sp"] = top_k_rows(
            [c.sp_energy for c in top], [1] * len(top), e_min, b_calls, top_k, success_threshold
        )
    if "ml+rx" in strategies:
        t = time.perf_counter()
        ref_slab = baseline.clean_slab if baseline is not None else None
        if ref_slab is None and relax_clean_slab:
            slab_result = list(ref_relax([slab.copy()]))[0]
            ref_slab = slab_result.atoms if _failure(slab_result) is None else None
        rx_results = list(ref_relax([c.relaxed for c in top]))
        for c, result in zip(top, rx_results, strict=True):
            c.rx_error = _failure(result)
            c.rx_calls = calls_of(result)
            c.rx_relaxed = result.atoms
            if c.rx_error is None:
                c.rx_validity = check_validity(c.initial, result.atoms, ref_slab)
                c.rx_energy = float(result.energy) if c.rx_validity.valid else None
        timings["reference_rx"] = time.perf_counter() - t
        rows["ml+rx"] = top_k_rows(
            [c.rx_energy for c in top], [c.rx_calls for c in top], e_min, b_calls, top_k,
            success_threshold,
        )  # fmt: skip
    timings["total"] = time.perf_counter() - start_all

    smiles = str(ads.info.get("smiles", ads.get_chemical_formula()))
    settings = {
        "n_placements": len(placements),
        "seed": seed,
        "top_k": top_k,
        "strategies": list(rows),
        "relax_clean_slab": relax_clean_slab,
        "success_threshold": success_threshold,
        "reference": None if reference is None else type(reference).__name__,
        "reference_fmax": reference_fmax,
        "reference_steps": reference_steps,
        "adsorbate": smiles,
        "binding_indices": list(ads.info["binding_indices"]),
    }
    n_ads = int((placements[0].get_tags() == ADSORBATE_TAG).sum()) if placements else len(ads)
    system = f"{slab.get_chemical_formula()} + {smiles} ({n_ads} atoms)"
    return AdsorbMLResult(
        system=system,
        candidates=candidates,
        ml_clean_slab=ml_slab if ml_slab is not None else slab.copy(),
        baseline=baseline,
        strategies=rows,
        timings=timings,
        settings=settings,
    )
