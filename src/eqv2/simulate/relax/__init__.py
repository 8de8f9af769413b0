"""Batched structure relaxation: many structures, one model call per optimiser step."""

from eqv2.simulate.relax.cell import CellFilter
from eqv2.simulate.relax.engine import DEFAULT_MAX_ATOMS, RelaxResult, relax_structures
from eqv2.simulate.relax.optimizers import (
    OPTIMIZERS,
    BatchedFIRE,
    BatchedLBFGS,
    lbfgs_direction,
    make_optimizer,
    make_relax_optimizer,
)

__all__ = [
    "DEFAULT_MAX_ATOMS",
    "OPTIMIZERS",
    "BatchedFIRE",
    "BatchedLBFGS",
    "CellFilter",
    "RelaxResult",
    "lbfgs_direction",
    "make_optimizer",
    "make_relax_optimizer",
    "relax_structures",
]
