"""The record type of eqv2's data layer, re-exported from :mod:`eqv2.graph.structure`.

The record lives next to the graph code so that ``eqv2.graph.batch_structures`` can consume it
without importing the data layer (DESIGN.md §2, §8).
"""

from eqv2.graph.structure import (
    ENERGY_ALIASES,
    FORCES_ALIASES,
    LABELS,
    STRESS_ALIASES,
    Structure,
    from_atoms,
    to_atoms,
)

__all__ = [
    "ENERGY_ALIASES",
    "FORCES_ALIASES",
    "LABELS",
    "STRESS_ALIASES",
    "Structure",
    "from_atoms",
    "to_atoms",
]
