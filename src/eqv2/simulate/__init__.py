"""Using trained models: ASE calculator (layer 5)."""

from eqv2.simulate.calculator import EqV2Calculator, load_calculator

__all__ = ["EqV2Calculator", "load_calculator"]
