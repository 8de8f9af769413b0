"""The immutable records AdsorbML's stages pass along: one calculation's outcome, and a candidate.

A :class:`Candidate` is one placement with what each stage found for it: the ML relaxation
(``ml``), its rank among valid candidates, the reference single point on the ML structure
(``sp``, ML+SP), the reference relaxation from it (``rx``, ML+RX) and the baseline's reference
relaxation of the placement (``reference``). Stages never modify a candidate: they return a copy
with one more field filled (``dataclasses.replace``), so each stage's input stays what it was.
The flat names of earlier releases (``ml_energy``, ``sp_energy``, ``rx_calls``, ...) remain as
read-only properties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ase import Atoms

from eqv2.simulate.adsorbml.relaxers import RelaxOutcome, calls_of
from eqv2.simulate.adsorbml.validity import Validity

__all__ = ["Candidate", "Outcome", "failure_of"]


def failure_of(result: Any) -> str | None:
    """Why a relaxation or single point failed (its error, or a missing/non-finite energy)."""
    if getattr(result, "error", None) is not None:
        return str(result.error)
    energy = getattr(result, "energy", None)
    if energy is None or not math.isfinite(energy):
        return f"non-finite or missing energy ({energy})"
    return None


@dataclass(frozen=True)
class Outcome:
    """One calculation on one structure: a relaxation or a single point.

    Attributes:
        atoms: the final structure (None when the calculator returned none).
        energy: eV; None when the calculation failed.
        error: why it failed, or None.
        converged, steps: of a relaxation (a single point: True, 0).
        calls: calculator calls it took.
        validity: the AdsorbML constraints checked on the result (None: not checked or failed).
    """

    atoms: Atoms | None
    energy: float | None
    error: str | None
    converged: bool = False
    steps: int = 0
    calls: int = 0
    validity: Validity | None = None

    @classmethod
    def of_relaxation(cls, result: RelaxOutcome, validity: Validity | None = None) -> Outcome:
        """From a relaxer's result (see :mod:`eqv2.simulate.adsorbml.relaxers`)."""
        error = failure_of(result)
        return cls(
            atoms=result.atoms,
            energy=None if error else float(result.energy),
            error=error,
            converged=bool(result.converged),
            steps=int(result.steps),
            calls=calls_of(result),
            validity=validity if error is None else None,
        )

    @classmethod
    def of_single_point(cls, atoms: Atoms | None, result: Any) -> Outcome:
        """From :func:`eqv2.simulate.adsorbml.relaxers.single_points`' result (one call)."""
        error = failure_of(result)
        energy = None if error else float(result.energy)
        return cls(atoms, energy, error, converged=error is None, calls=1)

    @property
    def valid(self) -> bool:
        """Succeeded and passed every constraint it was checked against."""
        return self.error is None and self.validity is not None and self.validity.valid

    @property
    def reasons(self) -> list[str] | None:
        """The constraints it violated (None when not checked)."""
        return None if self.validity is None else self.validity.reasons


@dataclass(frozen=True)
class Candidate:
    """One placement and what the stages found for it (see the module docstring).

    Attributes:
        placement_id, placement, site: from the placement's ``info``.
        initial: the placement.
        ml: the ML relaxation, with its validity.
        rank: position among valid candidates by ML energy (0 = lowest), None if invalid.
        sp: ML+SP reference single point (top k only).
        rx: ML+RX reference relaxation, with its validity (top k only).
        reference: the baseline's reference relaxation of this placement.
    """

    placement_id: int
    placement: str
    site: str
    initial: Atoms
    ml: Outcome
    rank: int | None = None
    sp: Outcome | None = None
    rx: Outcome | None = None
    reference: Outcome | None = None

    @property
    def valid(self) -> bool:
        """ML relaxation succeeded and passed every constraint."""
        return self.ml.valid

    # -- the flat names of earlier releases (read-only) -------------------------------------
    relaxed = property(lambda self: self.ml.atoms, doc="The ML-relaxed structure.")
    ml_energy = property(lambda self: self.ml.energy, doc="ML energy after relaxation (eV).")
    converged = property(lambda self: self.ml.converged, doc="ML relaxation converged.")
    steps = property(lambda self: self.ml.steps, doc="ML relaxation steps.")
    error = property(lambda self: self.ml.error, doc="Why the ML relaxation failed.")
    validity = property(lambda self: self.ml.validity, doc="Constraints of the ML relaxation.")
    sp_energy = property(lambda self: _get(self.sp, "energy"), doc="ML+SP reference energy.")
    sp_error = property(lambda self: _get(self.sp, "error"), doc="ML+SP failure.")
    rx_relaxed = property(lambda self: _get(self.rx, "atoms"), doc="ML+RX structure.")
    rx_calls = property(lambda self: _get(self.rx, "calls", 0), doc="ML+RX reference calls.")
    rx_validity = property(lambda self: _get(self.rx, "validity"), doc="ML+RX constraints.")
    rx_error = property(lambda self: _get(self.rx, "error"), doc="ML+RX failure.")
    reference_energy = property(
        lambda self: _get(self.reference, "energy"), doc="Baseline reference energy."
    )
    reference_calls = property(
        lambda self: _get(self.reference, "calls", 0), doc="Baseline reference calls."
    )
    reference_validity = property(
        lambda self: _get(self.reference, "validity"), doc="Baseline relaxation constraints."
    )
    reference_error = property(
        lambda self: _get(self.reference, "error"), doc="Baseline relaxation failure."
    )

    @property
    def rx_energy(self) -> float | None:
        """ML+RX reference energy when that relaxation is valid, else None."""
        return self.rx.energy if self.rx is not None and self.rx.valid else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no structures)."""
        return {
            "placement_id": self.placement_id,
            "placement": self.placement,
            "site": self.site,
            "ml_energy": self.ml_energy,
            "ml_converged": self.converged,
            "ml_steps": self.steps,
            "ml_error": self.error,
            "ml_valid": self.valid,
            "ml_invalid_reasons": self.ml.reasons,
            "rank": self.rank,
            "sp_energy": self.sp_energy,
            "sp_error": self.sp_error,
            "rx_energy": self.rx_energy,
            "rx_calls": self.rx_calls,
            "rx_invalid_reasons": None if self.rx is None else self.rx.reasons,
            "rx_error": self.rx_error,
            "reference_energy": self.reference_energy,
            "reference_calls": self.reference_calls,
            "reference_invalid_reasons": None if self.reference is None else self.reference.reasons,
            "reference_error": self.reference_error,
        }


def _get(outcome: Outcome | None, name: str, default: Any = None) -> Any:
    return default if outcome is None else getattr(outcome, name)
