import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixAtoms
from ase.io import read

from eqv2.model import Potential
from eqv2.simulate import EqV2Calculator
from eqv2.simulate.md import MDDiverged, MDInterrupted, energy_drift, run_md
from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)
from tests.tiny import tiny_model


# every pair of a small molecule stays inside the 6 Å cutoff and no neighbour is dropped, so the
# energy is smooth along the trajectory
def _calc(direct_forces: bool) -> EqV2Calculator:
    model = tiny_model(max_radius=6.0, max_neighbors=50, direct_forces=direct_forces)
    return EqV2Calculator(Potential(model), dtype=torch.float64)


@pytest.fixture(scope="module")
def conservative():
    return _calc(direct_forces=False)


@pytest.fixture(scope="module")
def direct():
    return _calc(direct_forces=True)


def test_energy_drift_of_known_series():
    t = np.arange(5) * 100.0  # fs
    e = -10.0 + 0.002 * t / 1000.0 * 4  # 2 meV/atom/ps for 4 atoms
    d = energy_drift(t, e, 4)
    assert d["drift_meV_per_atom_per_ps"] == pytest.approx(2.0)
    assert d["max_abs_dE_eV"] == pytest.approx(0.0032)
    assert d["max_abs_dE_meV_per_atom"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least two samples"):
        energy_drift(t[:1], e[:1], 4)


def test_nve_conserves_energy_with_conservative_forces(conservative, direct):
    atoms = molecule("CH3OH")
    run = dict(ensemble="nve", timestep_fs=0.25, steps=40, temperature_K=300.0, seed=1)
    r = run_md(atoms, conservative, **run)
    assert r.time_fs[-1] == pytest.approx(40 * 0.25)
    kinetic = r.kinetic_energy[0]
    assert 0.1 < kinetic < 0.4  # ~ 3/2 N kT at 300 K
    # velocity Verlet's energy error is O(dt^2): below 1 % of the kinetic energy here
    assert r.drift["max_abs_dE_eV"] < 0.01 * kinetic
    # the direct force head is no gradient: the same run strays tens of times further
    r_direct = run_md(atoms, direct, **run)
    assert r_direct.drift["max_abs_dE_eV"] > 10 * r.drift["max_abs_dE_eV"]
    np.testing.assert_array_equal(atoms.positions, molecule("CH3OH").positions)  # input kept


def test_same_seed_same_run_and_trajectory_frames(direct, tmp_path):
    atoms = molecule("CH3OH")
    path = tmp_path / "traj.extxyz"
    a = run_md(atoms, direct, steps=7, interval=3, seed=4, trajectory=path)
    b = run_md(atoms, direct, steps=7, interval=3, seed=4)
    c = run_md(atoms, direct, steps=7, interval=3, seed=5)
    np.testing.assert_array_equal(a.total_energy, b.total_energy)
    assert not np.array_equal(a.total_energy, c.total_energy)
    frames = read(path, ":")
    assert a.frames_written == len(frames) == 4  # steps 0, 3, 6 and the last, 7
    assert [f.info["md_step"] for f in frames] == [0, 3, 6, 7]
    assert frames[-1].get_potential_energy() == pytest.approx(a.potential_energy[-1])
    assert frames[-1].info["time_fs"] == pytest.approx(7.0)
    np.testing.assert_allclose(frames[0].get_momenta().sum(axis=0), 0.0, atol=1e-10)


def test_langevin_heats_towards_the_target(direct):
    atoms = molecule("CH3OH")
    atoms.set_constraint(FixAtoms(indices=[0]))
    run = dict(ensemble="langevin", timestep_fs=1.0, steps=20, friction_per_fs=0.1, seed=0)
    r = run_md(atoms, direct, temperature_K=1000.0, initial_temperature_K=0.0, **run)
    assert r.temperature_K[0] == 0.0
    assert 300.0 < r.temperature_K[10:].mean() < 3000.0
    assert r.drift is None and r.summary()["settings"]["n_fixed"] == 1


class _FailAfter(Calculator):
    """Zero energy and forces for ``good_steps`` calls, then NaN (``what="nan"``: energy,
    ``"nan-forces"``: forces) or a KeyboardInterrupt (``"interrupt"``: Ctrl-C)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, good_steps: int, what: str = "nan"):
        super().__init__()
        self.calls, self.good_steps, self.what = 0, good_steps, what

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        bad = self.calls > self.good_steps
        if bad and self.what == "interrupt":
            raise KeyboardInterrupt
        forces = np.zeros((len(atoms), 3))
        if bad and self.what == "nan-forces":
            forces[1, 2] = np.inf
        energy = np.nan if bad and self.what == "nan" else 0.0
        self.results = {"energy": energy, "forces": forces}


@pytest.mark.parametrize(
    ("what", "error", "match"),
    [
        ("nan", MDDiverged, "MD diverged at step 3: potential energy nan"),
        ("nan-forces", MDDiverged, r"step 3: .*non-finite forces on 1 atom\(s\) \(first: atom 1\)"),
        ("interrupt", MDInterrupted, "interrupted after step 2 of 7"),
    ],
)
def test_a_stopped_run_keeps_every_finished_frame(what, error, match, tmp_path):
    path = tmp_path / "traj.extxyz"
    with pytest.raises(error, match=match) as info:
        run_md(molecule("CO"), _FailAfter(3, what), steps=7, interval=1, trajectory=path)
    assert [f.info["md_step"] for f in read(path, ":")] == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["traj.extxyz"]  # no temporary file left
    result = info.value.result
    assert result.frames_written == 3 and len(result.time_fs) == 3
    assert result.ended["last_step"] == 2
    assert result.summary()["ended"]["reason"] == (
        "interrupted" if what == "interrupt" else "diverged"
    )


def test_nothing_computed_leaves_no_trajectory(direct, tmp_path):
    path = tmp_path / "traj.extxyz"
    with pytest.raises(MDDiverged, match="MD diverged at step 0"):
        run_md(molecule("CO"), _FailAfter(0), steps=5, interval=1, trajectory=path)
    assert list(tmp_path.iterdir()) == []
    atoms = molecule("CO")
    atoms.numbers[0] = 95  # beyond the tiny model's 90 elements
    with pytest.raises(ValueError, match="Z=95"):
        run_md(atoms, direct, steps=2, trajectory=path)
    assert list(tmp_path.iterdir()) == []
    for kwargs, msg in [
        (dict(ensemble="npt"), "ensemble='npt'"),
        (dict(timestep_fs=0.0), "timestep_fs=0.0"),
        (dict(steps=0), "steps=0"),
        (dict(interval=0), "interval=0"),
        (dict(temperature_K=-1.0), "temperature_K=-1.0"),
        (dict(initial_temperature_K=float("nan")), "initial_temperature_K=nan"),
        (dict(ensemble="langevin", friction_per_fs=0.0), "friction=0.0"),
    ]:
        with pytest.raises(ValueError, match=msg):
            run_md(molecule("CO"), direct, **kwargs)
