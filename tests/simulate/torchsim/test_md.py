"""Batched MD through torch-sim: per-structure results equal single runs and the ASE engine,
`eqv2 md`'s trajectory and report contents, seeds, NPT's stress sign, early stops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.constraints import FixAtoms
from ase.io import read

from eqv2.simulate import EqV2Calculator
from eqv2.simulate.md import MDDiverged, MDInterrupted, run_md
from tests.simulate.relax.tiny_relax import make_potential, one_thread  # noqa: F401 (autouse)
from tests.simulate.torchsim.conftest import SKIP_REASON, small_cells

pytest.importorskip("torch_sim", reason=SKIP_REASON)

from eqv2.simulate.torchsim import EqV2TorchSimModel, run_md_batch  # noqa: E402

RUN = dict(ensemble="nve", timestep_fs=1.0, steps=4, temperature_K=300.0, seed=3)


def test_batched_nve_of_16_equals_single_runs_and_the_ase_engine(model64, potential64):
    cells = small_cells(16)
    batch = run_md_batch(cells, model64, **RUN)
    assert [r.settings["structures_in_batch"] for r in batch] == [16] * 16
    for k in (0, 11):  # structure k of the batch runs as seed + k alone
        alone = run_md_batch([cells[k]], model64, **{**RUN, "seed": RUN["seed"] + k})[0]
        np.testing.assert_allclose(batch[k].potential_energy, alone.potential_energy, atol=1e-12)
        np.testing.assert_allclose(batch[k].total_energy, alone.total_energy, atol=1e-12)
        assert batch[k].settings["seed"] == alone.settings["seed"] == RUN["seed"] + k
    # the same velocities and velocity Verlet as ASE's engine: the same trajectory
    ase = run_md(cells[11], EqV2Calculator(potential64), **{**RUN, "seed": RUN["seed"] + 11})
    np.testing.assert_allclose(batch[11].potential_energy, ase.potential_energy, atol=1e-10)
    np.testing.assert_allclose(batch[11].temperature_K, ase.temperature_K, rtol=1e-9)
    assert batch[11].drift["max_abs_dE_eV"] == pytest.approx(ase.drift["max_abs_dE_eV"], abs=1e-10)
    # different structures really moved differently
    assert not np.allclose(batch[0].potential_energy, batch[2].potential_energy)
    # explicit per-structure seeds: structure 11 second in a batch, seeded as it was above
    pair = run_md_batch([cells[0], cells[11]], model64, **RUN, seeds=[7, RUN["seed"] + 11])
    np.testing.assert_allclose(pair[1].total_energy, batch[11].total_energy, atol=1e-12)
    assert [r.settings["seed"] for r in pair] == [7, RUN["seed"] + 11]


def test_autobatcher_bins_give_the_same_results(model64):
    cells = small_cells(4)  # 4 + 2 + 4 + 2 atoms: a budget of 6 makes three or four bins
    one_bin = run_md_batch(cells, model64, **RUN)
    binned = run_md_batch(cells, model64, max_memory_scaler=6, **RUN)
    assert max(r.settings["structures_in_batch"] for r in binned) < 4
    for a, b in zip(one_bin, binned, strict=True):
        np.testing.assert_allclose(a.total_energy, b.total_energy, atol=1e-12)


def test_trajectories_hold_what_the_ase_engine_writes(model64, potential64, tmp_path):
    cells = small_cells(2)
    paths = [tmp_path / "a.extxyz", tmp_path / "b.extxyz"]
    results = run_md_batch(cells, model64, **{**RUN, "steps": 5}, interval=2, trajectories=paths)
    ase_path = tmp_path / "ase.extxyz"
    run_md(cells[1], EqV2Calculator(potential64), **{**RUN, "steps": 5, "seed": 4}, interval=2,
           trajectory=ase_path)  # fmt: skip
    for path, result in zip(paths, results, strict=True):
        frames = read(path, ":")
        assert result.frames_written == len(frames) == 4
        assert [f.info["md_step"] for f in frames] == [0, 2, 4, 5]
        assert frames[-1].get_potential_energy() == pytest.approx(result.potential_energy[-1])
        np.testing.assert_allclose(frames[0].get_momenta().sum(axis=0), 0.0, atol=1e-10)
    ours, ase = read(paths[1], ":"), read(ase_path, ":")
    assert set(ours[-1].info) == set(ase[-1].info) and set(ours[-1].arrays) == set(ase[-1].arrays)
    for a, b in zip(ours, ase, strict=True):
        assert a.info["total_energy"] == pytest.approx(b.info["total_energy"], abs=1e-9)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-8)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_langevin_is_seeded(model64):
    run = dict(ensemble="langevin", steps=3, temperature_K=600.0, friction_per_fs=0.05)
    a = run_md_batch(small_cells(2), model64, seed=1, **run)
    b = run_md_batch(small_cells(2), model64, seed=1, **run)
    c = run_md_batch(small_cells(2), model64, seed=2, **run)
    np.testing.assert_array_equal(a[1].total_energy, b[1].total_energy)
    assert not np.array_equal(a[1].total_energy, c[1].total_energy)
    assert a[0].drift is None and a[0].settings["friction_per_fs"] == 0.05


def test_npt_moves_the_volume_the_way_the_stress_says(omat_model, tmp_path):
    """The OMat fixture's stress head says the cell is under ~1.4 GPa of pressure: at 0 GPa
    outside the barostat expands it, at 20 GPa it compresses it (a sign error would swap)."""
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    volumes = {}
    for pressure in (0.0, 20.0):
        path = tmp_path / f"npt{pressure:g}.extxyz"
        run_md_batch([cu], omat_model, ensemble="npt", steps=2, temperature_K=10.0,
                     pressure_GPa=pressure, interval=2, trajectories=[path])  # fmt: skip
        volumes[pressure] = read(path, -1).get_volume()
    assert volumes[0.0] > cu.get_volume() > volumes[20.0]


class _Stopping(EqV2TorchSimModel):
    """Raises KeyboardInterrupt, or returns a NaN energy, on its ``at``-th call."""

    def __init__(self, potential, at: int, what: str) -> None:
        super().__init__(potential)
        self.calls, self.at, self.what = 0, at, what

    def forward(self, state, **kwargs):
        self.calls += 1
        out = super().forward(state, **kwargs)
        if self.calls == self.at:
            if self.what == "interrupt":
                raise KeyboardInterrupt
            out["energy"] = out["energy"] * float("nan")
        return out


def test_interrupt_keeps_complete_frames(potential64, tmp_path):
    paths = [tmp_path / "a.extxyz", tmp_path / "b.extxyz"]
    model = _Stopping(potential64, at=4, what="interrupt")  # init, steps 1, 2; dies in step 3
    with pytest.raises(MDInterrupted) as info:
        run_md_batch(small_cells(2), model, **{**RUN, "steps": 6}, interval=1, trajectories=paths)
    results = info.value.result
    assert [r.ended["reason"] for r in results] == ["interrupted"] * 2
    assert results[0].ended["last_step"] == 2
    assert [f.info["md_step"] for f in read(paths[0], ":")] == [0, 1, 2]


def test_divergence_ends_the_batch_and_names_the_structure(potential64, tmp_path):
    path = tmp_path / "a.extxyz"
    diverging = _Stopping(potential64, at=3, what="nan")
    results = run_md_batch(small_cells(1), diverging, **RUN, interval=1, trajectories=[path])
    assert results[0].ended["reason"] == "diverged" and results[0].ended["last_step"] == 1
    assert "structure 0: MD diverged at step 2" in results[0].ended["message"]
    assert len(read(path, ":")) == 2
    with pytest.raises(MDDiverged, match="at step 0") as info:
        run_md_batch(small_cells(1), _Stopping(potential64, at=1, what="nan"), **RUN)
    assert info.value.result is None


def test_bad_input_is_refused_before_any_work(model64, tmp_path):
    fixed = small_cells(1)[0]
    fixed.set_constraint(FixAtoms(indices=[0]))
    slab = small_cells(1)[0]
    slab.pbc = (True, True, False)
    path = tmp_path / "t.extxyz"
    cases = [
        ([fixed], {}, "fixed atoms"),
        ([slab], {}, "one periodicity flag for all three axes"),
        ([small_cells(1)[0], molecule("H2O")], {}, "differ in periodicity"),
        ([molecule("H2O")], {"ensemble": "npt"}, "needs a model with stress"),
        (small_cells(2), {"trajectories": [path]}, "1 trajectory paths for 2 structures"),
        (small_cells(1), {"ensemble": "nvt"}, "choose one of nve, langevin, npt"),
        (small_cells(2), {"seeds": [1]}, "1 seeds for 2 structures"),
    ]
    for structures, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            run_md_batch(structures, model64, **{**RUN, **kwargs})
    assert not path.exists()


def test_open_structures_match_the_ase_engine(model64, potential64):
    result = run_md_batch([molecule("H2O"), molecule("CH4")], model64, **RUN)
    assert all(r.ended["reason"] == "completed" for r in result)
    ase = run_md(molecule("CH4"), EqV2Calculator(potential64), **{**RUN, "seed": RUN["seed"] + 1})
    np.testing.assert_allclose(result[1].total_energy, ase.total_energy, atol=1e-10)


def test_float32_model_runs():
    model32 = EqV2TorchSimModel(make_potential(torch.float32))
    result = run_md_batch(small_cells(2), model32, **RUN)
    assert [r.ended["reason"] for r in result] == ["completed"] * 2
    assert result[0].potential_energy.dtype == np.float64  # series are float64 numpy
