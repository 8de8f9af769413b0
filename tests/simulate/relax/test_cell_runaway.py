"""The runaway guard of variable-cell relaxation: a cell leaving its volume window (or taking
an absurd strain step) stops its structure as failed, and only that structure."""

from __future__ import annotations

import numpy as np
import pytest
from ase.units import GPa

from eqv2.simulate import CellFilter, relax_structures
from tests.simulate.relax.tiny_relax import make_potential, strained_bulk

pytestmark = pytest.mark.filterwarnings("ignore:logm result may be inaccurate")


class _ConstantTension:
    """The tiny model whose stress is a constant ``stress`` × I on structures containing
    ``element`` (what the OMat fixture's random stress head does: a pressure of 1.39 GPa,
    stress −1.39 GPa in ASE's sign, whatever the cell; the cell then grows for ever)."""

    def __init__(self, element: int, stress: float) -> None:
        self.inner = make_potential()
        self.element, self.stress = element, stress

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def compute(self, graph, stress=False):
        out = self.inner.compute(graph, stress=stress)
        if stress:
            numbers, batch = graph["atomic_numbers"].numpy(), graph["batch"].numpy()
            hit = np.unique(batch[numbers == self.element])
            out["stress"][hit] = self.stress * np.eye(3)
        return out


@pytest.fixture(scope="module")
def crystals():
    chosen = strained_bulk()
    return [chosen[0], chosen[2], chosen[7]]  # Cu fcc (4 atoms), Si diamond, ZnO wurtzite


def test_a_runaway_cell_fails_alone_with_its_volume_ratio_and_the_fix(crystals):
    potential = _ConstantTension(element=29, stress=-1.39 * GPa)
    results = relax_structures(potential, crystals, optimizer="fire", fmax=0.05, cell=True)
    cu, others = results[0], results[1:]
    assert cu.error is not None and not cu.converged and cu.energy is None
    assert "Structure 0 ('Cu-fcc', Cu4)" in cu.error and "volume_window [0.25, 4]" in cu.error
    ratio = float(cu.error.split("would reach ")[1].split(" ×")[0])
    assert ratio > 4.0
    assert "stress=True" in cu.error and "trained on stress" in cu.error  # the fix
    # it stopped with its last cell inside the window (never evaluated outside it)
    kept = cu.atoms.get_volume() / crystals[0].get_volume()
    assert 1.0 < kept <= 4.0
    assert cu.atoms.info["relax_error"] == cu.error
    for r in others:  # the rest of the batch is unaffected: converged as without the runaway
        assert r.error is None and r.converged
    alone = relax_structures(make_potential(), crystals[1:], optimizer="fire", fmax=0.05, cell=True)
    for r, ref in zip(others, alone, strict=True):
        assert r.steps == ref.steps and r.energy == pytest.approx(ref.energy, abs=1e-10)


def test_a_narrow_window_and_an_absurd_strain_step_stop_the_structure(crystals):
    # tension: the cell shrinks (until its cell forces V σ / n fall below fmax at ~0.34 V0)
    potential = _ConstantTension(element=29, stress=1.39 * GPa)
    narrow = CellFilter(volume_window=(0.9, 1.1))
    result = relax_structures(potential, crystals[:1], optimizer="fire", fmax=0.05, cell=narrow)[0]
    assert "volume_window [0.9, 1.1]" in result.error
    ratio = float(result.error.split("would reach ")[1].split(" ×")[0])
    assert ratio < 0.9
    # a huge stress with tiny cell scale: FIRE's 0.2 step in c·log F is a factor e^(0.2/c)
    violent = _ConstantTension(element=29, stress=-50.0)
    jumpy = CellFilter(exp_cell_factor=0.05, volume_window=(1e-9, 1e9))
    result = relax_structures(violent, crystals[:1], optimizer="fire", fmax=0.05, cell=jumpy)[0]
    assert "max_strain_step=0.5" in result.error and "Structure 0 ('Cu-fcc', Cu4)" in result.error


def test_runaway_reasons_and_bad_settings():
    cells = np.stack([np.eye(3) * 3.0] * 3)
    new = cells.copy()
    new[1] *= 1.7  # volume × 4.9, each step stretch e^0.53
    new[2] = np.diag([3.0, 3.0, 3.0 * 1.8])  # one axis × 1.8: stretch 0.59 > 0.5, volume × 1.8
    reasons = CellFilter().runaway(cells, cells, new)
    assert reasons[0] is None
    assert "4.91 × its starting volume" in reasons[1]
    assert "factor 1.8 along a principal axis" in reasons[2]
    degenerate = cells.copy()
    degenerate[0, 2] = 0.0
    assert "volume_window" in CellFilter().runaway(cells, cells, degenerate)[0]
    for window in ((0.0, 4.0), (1.2, 4.0), (0.5, 1.0), (0.5, np.inf)):
        with pytest.raises(ValueError, match="volume_window"):
            CellFilter(volume_window=window)
    with pytest.raises(ValueError, match="max_strain_step"):
        CellFilter(max_strain_step=0.0)
