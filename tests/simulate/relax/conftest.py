"""A tiny energy-conserving model and generated slab+adsorbate systems for relaxation tests.

The random tiny model gives a smooth (conservative, no neighbour cap) but rough landscape on
which LBFGS without line search is chaotic for some seeds: ASE against itself, with one atom
moved by 1e-12 Å, then ends in different minima. Seed 0 with a 3.5 Å cutoff is well conditioned
on these systems (the perturbed ASE runs agree to 2e-4 eV), so batched-vs-ASE comparisons test
the optimiser and not the landscape.
"""

from __future__ import annotations

import pytest

from eqv2.model import Potential
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    generated_systems,
    make_potential,
    one_thread,
)


@pytest.fixture
def potential() -> Potential:
    return make_potential()


@pytest.fixture(scope="session")
def systems():
    return generated_systems(8)
