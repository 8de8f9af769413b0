"""Using trained models: ASE calculator, batched relaxation, relaxation metrics, MD (layer 5)."""

from eqv2.simulate.calculator import EqV2Calculator, load_calculator
from eqv2.simulate.md import MDResult, run_md
from eqv2.simulate.relax import CellFilter, RelaxResult, relax_structures
from eqv2.simulate.relax_evaluation import evaluate_relaxations, score_relaxations

__all__ = [
    "CellFilter",
    "EqV2Calculator",
    "MDResult",
    "RelaxResult",
    "evaluate_relaxations",
    "load_calculator",
    "relax_structures",
    "run_md",
    "score_relaxations",
]
