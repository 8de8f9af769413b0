"""relax_batch: FIRE through torch-sim's InFlightAutoBatcher; swapping structures in and out
changes nothing about each structure's relaxation."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)
from tests.simulate.torchsim.conftest import SKIP_REASON

pytest.importorskip("torch_sim", reason=SKIP_REASON)

from eqv2.simulate.torchsim import EqV2TorchSimModel, relax_batch  # noqa: E402


def _rattled(n: int):
    cells = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.15, seed=k)
        cells.append(atoms)
    return cells


class _Spy(EqV2TorchSimModel):
    """Records how many structures each model call holds."""

    sizes: list[int]

    def forward(self, state, **kwargs):
        self.sizes.append(state.n_systems)
        return super().forward(state, **kwargs)


def test_in_flight_batches_relax_each_structure_as_alone(potential64):
    model = _Spy(potential64)
    model.sizes = []
    cells = _rattled(3)
    # a budget of 9 atoms holds two 4-atom cells: the third waits and is swapped in
    relaxed = relax_batch(cells, model, fmax=0.1, max_steps=200, max_memory_scaler=9)
    assert max(model.sizes) == 2
    for atoms, start in zip(relaxed, cells, strict=True):
        assert atoms.info["relax_converged"]
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.1
        start = start.copy()
        start.calc = model_calc(model)
        assert atoms.get_potential_energy() < start.get_potential_energy()
    for k in (0, 2):  # one in flight when the third joined, and the one that joined
        alone = relax_batch(cells[k : k + 1], model, fmax=0.1, max_steps=200)[0]
        assert alone.info == relaxed[k].info
        np.testing.assert_allclose(alone.positions, relaxed[k].positions, atol=1e-12)
    np.testing.assert_array_equal(cells[0].positions, _rattled(1)[0].positions)  # input kept


def model_calc(model: EqV2TorchSimModel):
    from eqv2.simulate import EqV2Calculator

    return EqV2Calculator(model.potential)


def test_max_steps_stops_unconverged(model64):
    (atoms,) = relax_batch(_rattled(1), model64, fmax=1e-6, max_steps=11, steps_between_swaps=5)
    assert not atoms.info["relax_converged"] and atoms.info["relax_steps"] == 11  # 1 + 2 * 5


def test_cell_relaxation_lowers_the_stress(model64):
    atoms = bulk("Cu", "fcc", a=3.45, cubic=True)  # compressed
    start = atoms.copy()
    start.calc = model_calc(model64)
    (relaxed,) = relax_batch([atoms], model64, fmax=0.02, max_steps=100, relax_cell=True)
    assert np.abs(relaxed.get_stress()).max() < np.abs(start.get_stress()).max()
    assert relaxed.get_volume() != pytest.approx(atoms.get_volume())


def test_bad_parameters(model64):
    for kwargs, message in [({"fmax": 0.0}, "fmax=0.0"), ({"max_steps": 0}, "max_steps=0")]:
        with pytest.raises(ValueError, match=message):
            relax_batch(_rattled(1), model64, **kwargs)
