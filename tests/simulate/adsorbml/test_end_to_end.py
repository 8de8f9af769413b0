"""AdsorbML end to end through the batched relaxation engine: tiny model, EMT reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from eqv2.simulate.adsorbml import model_relaxer, run_adsorbml
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    make_potential,
    one_thread,
)

O_ATOM = Atoms("O", info={"binding_indices": [0]})


def test_tiny_model_through_the_engine_with_emt_reference(cu111):
    potential = make_potential()
    # an atom budget of two structures per batch makes structures enter as others finish
    relax = model_relaxer(potential, fmax=0.05, steps=4, max_atoms=30)
    result = run_adsorbml(
        cu111, O_ATOM, relax, EMT(), n_placements=3, seed=0, top_k=2,
        strategies=("ml+sp", "ml+rx"), reference_steps=15,
    )  # fmt: skip
    assert len(result.candidates) == 3
    for c in result.candidates:
        assert c.error is None and math.isfinite(c.ml_energy) and c.steps <= 4
        assert c.relaxed.info["relax_steps"] == c.steps
        # the model's energy of the relaxed structure, evaluated again
        assert c.ml_energy == pytest.approx(potential.predict(c.relaxed)["energy"], abs=1e-4)
        # fixed atoms stayed put
        fixed = c.initial.get_tags() == 0
        np.testing.assert_allclose(c.relaxed.positions[fixed], c.initial.positions[fixed])
    ranked = result.ranked
    assert ranked and [c.ml_energy for c in ranked] == sorted(c.ml_energy for c in ranked)
    for c in ranked[:2]:  # ML+SP: EMT energies of the ML structures
        atoms = c.relaxed.copy()
        atoms.calc = EMT()
        assert c.sp_energy == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    sp, rx = result.strategies["ml+sp"], result.strategies["ml+rx"]
    assert [r.k for r in sp] == [1, 2] and [r.calls for r in sp] == [1, min(2, len(ranked))]
    assert result.baseline.calls == sum(c.reference_calls for c in result.candidates)
    assert sp[0].speedup == pytest.approx(result.baseline.calls)
    assert rx[-1].calls == sum(c.rx_calls for c in ranked[:2])
    assert "ML+SP" in result.table()
