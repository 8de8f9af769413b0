"""Using trained models: ASE calculator, batched relaxation (layer 5)."""

from eqv2.simulate.calculator import EqV2Calculator, load_calculator
from eqv2.simulate.relax import RelaxResult, relax_structures

__all__ = ["EqV2Calculator", "RelaxResult", "load_calculator", "relax_structures"]
