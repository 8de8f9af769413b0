"""The AdsorbML loop with injected relaxers: EMT standing in for both ML and reference."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.io import read

from eqv2.simulate.adsorbml import ase_relaxer, generate_placements, resolve_adsorbate, run_adsorbml
from eqv2.simulate.adsorbml.outputs import write_outputs

O_ATOM = Atoms("O", info={"binding_indices": [0]})


@pytest.fixture(scope="module")
def emt_run():
    from tests.simulate.adsorbml.conftest import tagged_slab

    slab = tagged_slab()
    relax = ase_relaxer(EMT(), fmax=0.05, steps=60)
    result = run_adsorbml(
        slab, O_ATOM, relax, EMT(), n_placements=5, seed=1, top_k=3,
        strategies=("ml+sp", "ml+rx"), reference_steps=60,
    )  # fmt: skip
    return slab, result


def test_same_potential_finds_the_reference_minimum(emt_run):
    _, result = emt_run
    ranked = result.ranked
    assert [c.rank for c in ranked] == list(range(len(ranked)))
    assert [c.ml_energy for c in ranked] == sorted(c.ml_energy for c in ranked)
    # with the reference as "ML", the single points repeat the ML energies
    for c in ranked[:3]:
        assert c.sp_energy == pytest.approx(c.ml_energy, abs=1e-9)
    baseline = result.baseline
    assert baseline.source == "reference relaxations" and baseline.n_valid >= 1
    assert baseline.energy == pytest.approx(ranked[0].ml_energy, abs=1e-9)
    assert baseline.calls == sum(c.reference_calls for c in result.candidates)
    assert baseline.calls == sum(c.steps + 1 for c in result.candidates)
    sp = result.strategies["ml+sp"]
    assert [r.success for r in sp] == [True, True, True]
    assert [r.calls for r in sp] == [1, 2, 3]
    assert [r.speedup for r in sp] == pytest.approx([baseline.calls / k for k in (1, 2, 3)])
    rx = result.strategies["ml+rx"]
    assert rx[0].success and rx[0].calls == ranked[0].rx_calls >= 1


def test_report_contents(emt_run):
    _, result = emt_run
    report = result.to_dict()
    assert report["n_placements"] == 5 and report["settings"]["seed"] == 1
    assert set(report["strategies"]) == {"ml+sp", "ml+rx"}
    assert {"placements", "ml_relax", "reference_baseline", "reference_sp", "total"} <= set(
        report["timings_s"]
    )
    json.dumps(report)  # JSON-ready
    text = result.table()
    assert "ML+SP" in text and "ML+RX" in text and "reference minimum" in text


def test_outputs_are_written(emt_run, tmp_path):
    _, result = emt_run
    written = write_outputs(result, tmp_path / "out")
    assert set(written) == {
        "placements",
        "ml_relaxed",
        "reference_relaxed",
        "reference_rx",
        "report",
    }
    relaxed = read(written["ml_relaxed"], ":")
    assert len(relaxed) == 5
    assert relaxed[0].get_potential_energy() == pytest.approx(result.candidates[0].ml_energy)
    assert (relaxed[0].get_tags()[-1]) == 2
    assert json.loads(written["report"].read_text())["system"] == result.system
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        p.name for p in written.values()
    )  # no temporary files left


@dataclass
class Outcome:
    atoms: Atoms
    energy: float | None
    converged: bool = True
    steps: int = 3
    error: str | None = None


def _scripted(plan):
    """A relaxer that returns hand-made outcomes: plan[i](atoms) -> (atoms, energy, error)."""

    def relax(structures):
        out = []
        for atoms in structures:
            if (atoms.get_tags() == 2).any():
                final, energy, error = plan[atoms.info["placement_id"]](atoms.copy())
            else:  # the clean slab
                final, energy, error = atoms.copy(), 0.0, None
            out.append(Outcome(final, energy, error=error))
        return out

    return relax


def _lift(atoms):
    atoms.positions[atoms.get_tags() == 2] += [0, 0, 5.0]
    return atoms


def test_failed_and_invalid_relaxations_are_dropped_before_ranking(cu111):
    plan = {
        0: lambda a: (a, None, "model gave NaN forces"),
        1: lambda a: (_lift(a), -100.0, None),  # lowest energy but desorbed
        2: lambda a: (a, -1.0, None),
        3: lambda a: (a, -2.0, None),
    }
    placements = generate_placements(cu111, resolve_adsorbate(O_ATOM), 4, seed=0)
    result = run_adsorbml(
        cu111, O_ATOM, _scripted(plan), EMT(), placements=placements, top_k=3,
        reference_energy=-5.0, reference_calls=120,
    )  # fmt: skip
    c = result.candidates
    assert c[0].error == "model gave NaN forces" and not c[0].valid and c[0].validity is None
    assert c[1].validity.reasons == ["desorbed"] and not c[1].valid
    assert [x.placement_id for x in result.ranked] == [3, 2]
    assert c[0].sp_energy is None and c[1].sp_energy is None  # never sent to the reference
    emt = [x.sp_energy for x in result.ranked]
    assert all(e is not None for e in emt)
    rows = result.strategies["ml+sp"]
    assert [r.calls for r in rows] == [1, 2, 2]  # only two valid candidates
    assert [r.speedup for r in rows] == [120.0, 60.0, 60.0]
    assert result.baseline.source == "given" and result.baseline.energy == -5.0
    assert result.to_dict()["ml_invalid_counts"] == {"failed": 1, "desorbed": 1}


def test_ranking_only_without_a_reference(cu111):
    plan = {k: (lambda a, k=k: (a, float(-k), None)) for k in range(3)}
    placements = generate_placements(cu111, resolve_adsorbate(O_ATOM), 3)
    result = run_adsorbml(cu111, O_ATOM, _scripted(plan), None, placements=placements)
    assert result.baseline is None and result.strategies == {}
    assert [x.placement_id for x in result.ranked] == [2, 1, 0]
    assert "lowest ML energy -2.0000 eV" in result.table()


def test_bad_arguments(cu111):
    relax = _scripted({})
    with pytest.raises(ValueError, match="ML\\+SP needs a reference calculator"):
        run_adsorbml(cu111, O_ATOM, relax, None, reference_energy=-1.0)
    with pytest.raises(ValueError, match="unknown strategies"):
        run_adsorbml(cu111, O_ATOM, relax, EMT(), strategies=("ml+dft",))
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        run_adsorbml(cu111, O_ATOM, relax, EMT(), top_k=0)
    bad = cu111.copy()
    bad.set_tags(0)
    with pytest.raises(ValueError, match="no tag-1"):
        run_adsorbml(bad, O_ATOM, relax, EMT())


def test_ase_relaxer_reports_failures_per_structure(cu111):
    from ase.calculators.calculator import Calculator

    class Exploding(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            if len(self.atoms) > len(cu111):
                raise RuntimeError("SCF did not converge")
            self.results = {"energy": 1.0, "forces": np.zeros((len(self.atoms), 3))}

    ads = generate_placements(cu111, resolve_adsorbate(O_ATOM), 1)[0]
    good, bad = ase_relaxer(Exploding())([cu111, ads])
    assert good.error is None and good.converged and good.steps == 0 and good.energy == 1.0
    assert bad.energy is None and not bad.converged and "SCF did not converge" in bad.error
    assert "structure 1 (Cu12O)" in bad.error


def test_ml_rx_needs_a_reference_relaxer(cu111):
    with pytest.raises(ValueError, match="ML\\+RX needs a reference"):
        run_adsorbml(
            cu111, O_ATOM, _scripted({}), None, strategies=("ml+rx",), reference_energy=-1.0
        )
