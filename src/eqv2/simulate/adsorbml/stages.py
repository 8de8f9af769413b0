"""AdsorbML's stages, each a function from immutable records to new ones.

placement → :func:`ml_relaxation` → :func:`rank` → :func:`reference_baseline` (optional) →
:func:`ml_single_points` (ML+SP) / :func:`ml_reference_relaxations` (ML+RX) → report
(:mod:`eqv2.simulate.adsorbml.report`). :func:`eqv2.simulate.adsorbml.run_adsorbml` chains them;
a workflow that needs another order (e.g. ML relaxations of many systems before any reference
call) can call them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator

from eqv2.simulate.adsorbml.records import Candidate, Outcome, failure_of
from eqv2.simulate.adsorbml.relaxers import Relaxer, RelaxOutcome, single_points
from eqv2.simulate.adsorbml.validity import Validity, check_validity

__all__ = [
    "Baseline",
    "ml_reference_relaxations",
    "ml_relaxation",
    "ml_single_points",
    "rank",
    "reference_baseline",
    "relax_and_check",
    "top",
]


@dataclass(frozen=True)
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
        slab_ref = slab_result.atoms if failure_of(slab_result) is None else None
    validities: list[Validity | None] = []
    for initial, result in zip(initials, results, strict=True):
        ok = failure_of(result) is None and result.atoms is not None
        validities.append(check_validity(initial, result.atoms, slab_ref) if ok else None)
    return results, validities, slab_ref


def ml_relaxation(
    placements: Sequence[Atoms], relax: Relaxer, clean_slab: Atoms | None
) -> tuple[list[Candidate], Atoms | None]:
    """Relax every placement (and the clean slab) with the ML relaxer; check validity.

    Returns the candidates in placement order and the ML-relaxed clean slab (None if not asked
    for or failed).
    """
    results, validities, ml_slab = relax_and_check(placements, relax, clean_slab)
    candidates = [
        Candidate(
            placement_id=int(initial.info.get("placement_id", k)),
            placement=str(initial.info.get("placement", "given")),
            site=str(initial.info.get("site", "unknown")),
            initial=initial,
            ml=Outcome.of_relaxation(result, validity),
        )
        for k, (initial, result, validity) in enumerate(
            zip(placements, results, validities, strict=True)
        )
    ]
    return candidates, ml_slab


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Valid candidates ranked by ML energy (ties by placement id); invalid ones keep no rank."""
    order = sorted((c for c in candidates if c.valid), key=lambda c: (c.ml_energy, c.placement_id))
    ranks = {id(c): r for r, c in enumerate(order)}
    return [replace(c, rank=ranks.get(id(c))) for c in candidates]


def top(candidates: Sequence[Candidate], k: int) -> list[Candidate]:
    """The ``k`` lowest-ranked candidates, lowest ML energy first."""
    ranked = sorted((c for c in candidates if c.rank is not None), key=lambda c: c.rank)
    return ranked[:k]


def _merge(candidates: Sequence[Candidate], updated: Sequence[Candidate]) -> list[Candidate]:
    by_id = {c.placement_id: c for c in updated}
    return [by_id.get(c.placement_id, c) for c in candidates]


def reference_baseline(
    candidates: Sequence[Candidate], ref_relax: Relaxer, clean_slab: Atoms | None
) -> tuple[list[Candidate], Baseline]:
    """Relax every placement with the reference: the minimum the strategies are judged by."""
    results, validities, ref_slab = relax_and_check(
        [c.initial for c in candidates], ref_relax, clean_slab
    )
    updated = [
        replace(c, reference=Outcome.of_relaxation(result, validity))
        for c, result, validity in zip(candidates, results, validities, strict=True)
    ]
    valid = [c for c in updated if c.reference.valid]
    best = min(valid, key=lambda c: c.reference.energy, default=None)
    baseline = Baseline(
        energy=None if best is None else best.reference.energy,
        calls=sum(c.reference.calls for c in updated),
        source="reference relaxations",
        placement_id=None if best is None else best.placement_id,
        n_valid=len(valid),
        relaxed=[r.atoms for r in results],
        clean_slab=ref_slab,
    )
    return updated, baseline


def ml_single_points(
    candidates: Sequence[Candidate], chosen: Sequence[Candidate], reference: Calculator
) -> list[Candidate]:
    """ML+SP: one reference single point on each chosen candidate's ML structure."""
    points = single_points([c.relaxed for c in chosen], reference)
    updated = [
        replace(c, sp=Outcome.of_single_point(sp.atoms, sp))
        for c, sp in zip(chosen, points, strict=True)
    ]
    return _merge(candidates, updated)


def ml_reference_relaxations(
    candidates: Sequence[Candidate],
    chosen: Sequence[Candidate],
    ref_relax: Relaxer,
    ref_slab: Atoms | None,
) -> list[Candidate]:
    """ML+RX: a reference relaxation from each chosen candidate's ML structure, checked for
    validity against its placement (and ``ref_slab``, the reference-relaxed clean slab)."""
    results = list(ref_relax([c.relaxed for c in chosen]))
    updated = []
    for c, result in zip(chosen, results, strict=True):
        ok = failure_of(result) is None
        validity = check_validity(c.initial, result.atoms, ref_slab) if ok else None
        updated.append(replace(c, rx=Outcome.of_relaxation(result, validity)))
    return _merge(candidates, updated)
