"""The relaxers AdsorbML calls: the batched model engine, or ASE optimisers on any calculator.

A *relaxer* is any callable ``relax(structures) -> list[result]`` returning one result per
structure, in order, each with the attributes of :class:`eqv2.simulate.RelaxResult` that AdsorbML
reads: ``atoms`` (final structure), ``energy`` (eV or None), ``converged``, ``steps`` and
``error``. :func:`model_relaxer` binds :func:`eqv2.simulate.relax_structures` to a model;
:func:`ase_relaxer` relaxes one structure after another with an ASE optimiser on an ASE
calculator (the reference, e.g. EMT standing in for DFT). :func:`single_points` evaluates a
calculator once per structure.

Reference cost is counted in calculator calls, as the AdsorbML paper counts DFT ionic steps: an
ASE relaxation of ``steps`` optimiser steps costs ``steps + 1`` calls (the first evaluation, then
one per step; LBFGS, BFGS and FIRE take one evaluation per step), a single point one call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.optimize import BFGS, FIRE, LBFGS

from eqv2.simulate.relax import DEFAULT_MAX_ATOMS, RelaxResult, relax_structures

__all__ = [
    "ASE_OPTIMIZERS",
    "Relaxer",
    "RelaxOutcome",
    "SinglePointResult",
    "ase_relaxer",
    "calls_of",
    "model_relaxer",
    "single_points",
]


class RelaxOutcome(Protocol):
    """What AdsorbML reads from a relaxer's result (``eqv2.simulate.RelaxResult`` has it)."""

    atoms: Atoms
    energy: float | None
    converged: bool
    steps: int
    error: str | None


Relaxer = Callable[[Sequence[Atoms]], Sequence[RelaxOutcome]]

#: ASE optimisers by name; LBFGS uses the OC20 settings (max step 0.04 A, memory 50, damping 1,
#: initial curvature 70).
ASE_OPTIMIZERS: dict[str, Callable[[Atoms], Any]] = {
    "lbfgs": lambda a: LBFGS(a, maxstep=0.04, memory=50, damping=1.0, alpha=70.0, logfile=None),
    "bfgs": lambda a: BFGS(a, logfile=None),
    "fire": lambda a: FIRE(a, logfile=None),
}


def calls_of(result: RelaxOutcome) -> int:
    """Calculator calls of one relaxation: ``steps + 1``."""
    return int(result.steps) + 1


def model_relaxer(
    potential: Any,
    *,
    optimizer: str = "lbfgs",
    fmax: float = 0.05,
    steps: int = 300,
    max_atoms: int | None = DEFAULT_MAX_ATOMS,
    max_edges: int | None = None,
    progress: bool = False,
) -> Relaxer:
    """A relaxer running :func:`eqv2.simulate.relax_structures` with ``potential``.

    Args:
        potential: an ``eqv2`` ``Potential``.
        optimizer, fmax, steps, max_atoms, max_edges, progress: passed to ``relax_structures``.
    """

    def relax(structures: Sequence[Atoms]) -> list[RelaxResult]:
        return relax_structures(
            potential, list(structures), optimizer=optimizer, fmax=fmax, steps=steps,
            max_atoms=max_atoms, max_edges=max_edges, progress=progress,
        )  # fmt: skip

    return relax


def _frozen(atoms: Atoms, energy: float, forces: np.ndarray) -> Atoms:
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=energy, forces=forces)
    return out


def ase_relaxer(
    calculator: Calculator,
    *,
    optimizer: str = "lbfgs",
    fmax: float = 0.05,
    steps: int = 300,
) -> Relaxer:
    """A relaxer running an ASE optimiser with ``calculator``, one structure after another.

    A structure whose calculation raises or gives a non-finite energy is stopped with
    ``error`` set (the others go on). Results are :class:`eqv2.simulate.RelaxResult`; their
    ``atoms`` carry a ``SinglePointCalculator`` and ``info["converged"]``,
    ``info["relax_steps"]``.

    Args:
        calculator: any ASE calculator (shared: results are frozen after each structure).
        optimizer: ``"lbfgs"`` (OC20 settings), ``"bfgs"`` or ``"fire"``.
        fmax: convergence threshold on the largest free-atom force (eV/A).
        steps: optimiser step limit per structure.
    """
    if optimizer not in ASE_OPTIMIZERS:
        raise ValueError(f"optimizer {optimizer!r}: choose one of {', '.join(ASE_OPTIMIZERS)}")

    def relax(structures: Sequence[Atoms]) -> list[RelaxResult]:
        results = []
        for index, initial in enumerate(structures):
            atoms = initial.copy()
            atoms.calc = calculator
            opt = ASE_OPTIMIZERS[optimizer](atoms)
            converged, n_calls, error = False, 0, None
            try:
                for converged in opt.irun(fmax=fmax, steps=steps):  # noqa: B007
                    n_calls += 1
                    if not math.isfinite(atoms.get_potential_energy()):
                        raise FloatingPointError("non-finite energy")
                energy = float(atoms.get_potential_energy())
                forces = atoms.get_forces(apply_constraint=False)
                if not np.isfinite(forces).all():
                    raise FloatingPointError("non-finite forces")
            except Exception as exc:  # one bad structure must not stop the others
                error = f"structure {index} ({initial.get_chemical_formula()}): {exc}"
            taken = max(n_calls - 1, 0)
            converged = bool(converged) and error is None
            atoms.calc = None
            atoms.info.update(converged=converged, relax_steps=taken)
            if error is None:
                done = _frozen(atoms, energy, forces)
                results.append(RelaxResult(index, done, energy, forces, converged, taken))
            else:
                atoms.info["relax_error"] = error
                results.append(RelaxResult(index, atoms, None, None, False, taken, error))
        return results

    return relax


@dataclass
class SinglePointResult:
    """One reference evaluation.

    Attributes:
        energy: eV, or None on error.
        error: why it failed, or None.
        seconds: wall time of the call.
        atoms: a copy of the structure with a ``SinglePointCalculator`` (none on error).
    """

    energy: float | None
    error: str | None
    seconds: float
    atoms: Atoms


def single_points(structures: Sequence[Atoms], calculator: Calculator) -> list[SinglePointResult]:
    """One calculator evaluation per structure (energy and forces); errors are per structure."""
    out = []
    for index, structure in enumerate(structures):
        atoms = structure.copy()
        atoms.calc = calculator
        start = time.perf_counter()
        try:
            energy = float(atoms.get_potential_energy())
            if not math.isfinite(energy):
                raise FloatingPointError("non-finite energy")
            forces = atoms.get_forces(apply_constraint=False)
            result = SinglePointResult(energy, None, 0.0, _frozen(atoms, energy, forces))
        except Exception as exc:  # one bad structure must not stop the others
            error = f"structure {index} ({structure.get_chemical_formula()}): {exc}"
            atoms.calc = None
            result = SinglePointResult(None, error, 0.0, atoms)
        result.seconds = time.perf_counter() - start
        out.append(result)
    return out
