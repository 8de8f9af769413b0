"""AdsorbML's stages: immutable records in, new records out; chained they equal run_adsorbml."""

from __future__ import annotations

import dataclasses

import pytest
from ase import Atoms
from ase.calculators.emt import EMT

from eqv2.simulate.adsorbml import (
    AdsorbMLSettings,
    ase_relaxer,
    generate_placements,
    resolve_adsorbate,
    run_adsorbml,
)
from eqv2.simulate.adsorbml.stages import (
    ml_reference_relaxations,
    ml_relaxation,
    ml_single_points,
    rank,
    reference_baseline,
    top,
)
from tests.simulate.adsorbml.conftest import tagged_slab

O_ATOM = Atoms("O", info={"binding_indices": [0]})


@pytest.fixture(scope="module")
def setup():
    slab = tagged_slab()
    placements = generate_placements(slab, resolve_adsorbate(O_ATOM), 4, seed=2)
    return slab, placements, ase_relaxer(EMT(), fmax=0.05, steps=40)


def test_candidates_are_immutable_and_stages_leave_their_inputs_alone(setup):
    slab, placements, relax = setup
    candidates, ml_slab = ml_relaxation(placements, relax, slab.copy())
    assert ml_slab is not None and all(c.rank is None for c in candidates)
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidates[0].rank = 0
    ranked = rank(candidates)
    assert all(c.rank is None for c in candidates)  # the input is unchanged
    assert sorted(c.rank for c in ranked if c.rank is not None) == list(
        range(sum(c.valid for c in ranked))
    )
    chosen = top(ranked, 2)
    with_sp = ml_single_points(ranked, chosen, EMT())
    assert all(c.sp is None for c in ranked)
    assert [c.sp_energy for c in top(with_sp, 2)] == pytest.approx(
        [c.ml_energy for c in chosen], abs=1e-9
    )  # the reference is the "ML" here: a single point repeats the ML energy
    assert all(c.sp is None for c in with_sp if c.rank is None or c.rank >= 2)


def test_chained_stages_equal_run_adsorbml(setup):
    slab, placements, relax = setup
    result = run_adsorbml(
        slab, O_ATOM, relax, EMT(), placements=placements, top_k=2,
        strategies=("ml+sp", "ml+rx"), reference_relax=relax,
    )  # fmt: skip
    candidates, _ = ml_relaxation(placements, relax, slab.copy())
    candidates, baseline = reference_baseline(rank(candidates), relax, slab.copy())
    candidates = ml_single_points(candidates, top(candidates, 2), EMT())
    candidates = ml_reference_relaxations(
        candidates, top(candidates, 2), relax, baseline.clean_slab
    )
    assert result.baseline.energy == pytest.approx(baseline.energy, abs=1e-12)
    assert [c.to_dict() for c in result.candidates] == [c.to_dict() for c in candidates]


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="unknown strategies"):
        AdsorbMLSettings(strategies=("ml+xx",))
    with pytest.raises(ValueError, match="top_k"):
        AdsorbMLSettings(top_k=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        AdsorbMLSettings().seed = 3
