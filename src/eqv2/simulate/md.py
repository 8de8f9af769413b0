"""Molecular dynamics with an eqv2 model: ASE's velocity Verlet (NVE) and Langevin (NVT).

`run_md` drives one structure with any ASE calculator (normally `EqV2Calculator`), records the
potential, kinetic and total energy and the temperature at every step, writes every
``interval``-th frame to an extxyz trajectory (streamed to a temporary file that replaces the
target only when the run ends well, so a failed run never leaves a partial file) and, for NVE,
reports the energy drift (`energy_drift`).

Runs are deterministic for a given seed: the Maxwell-Boltzmann initial velocities and the
Langevin noise draw from their own ``numpy`` generators spawned from ``SeedSequence(seed)``.

Energy is conserved only by a model whose forces are −dE/dx (``direct_forces=False``); the
direct force head of the released EquiformerV2 models is not a gradient, and NVE with it drifts.
The drift report is how to see it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write as ase_write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from eqv2.atomic import atomic_write_path
from eqv2.graph import fixed_mask

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ase < 3.29 names it MaxwellBoltzmannDistribution
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng=None) -> None:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


__all__ = ["ENSEMBLES", "MDResult", "energy_drift", "run_md"]

#: Ensembles `run_md` knows: ``"nve"`` (velocity Verlet) and ``"langevin"`` (NVT).
ENSEMBLES = ("nve", "langevin")


@dataclass
class MDResult:
    """Per-step observables of one run (step 0 is the initial state).

    Attributes:
        time_fs: simulation time of each step (fs).
        potential_energy, kinetic_energy, total_energy: eV, per step.
        temperature_K: instantaneous temperature per step (K).
        frames_written: frames in the trajectory file (0 if none was written).
        drift: `energy_drift` of the total energy (NVE runs only).
        settings: the run's parameters.
        wall_s: wall-clock seconds of the run.
    """

    time_fs: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    total_energy: np.ndarray
    temperature_K: np.ndarray
    frames_written: int = 0
    drift: dict[str, float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready report: settings, temperatures, energies at start and end, drift."""
        return {
            "settings": self.settings,
            "steps": len(self.time_fs) - 1,
            "time_fs": float(self.time_fs[-1]),
            "frames_written": self.frames_written,
            "temperature_K": {
                "initial": float(self.temperature_K[0]),
                "final": float(self.temperature_K[-1]),
                "mean": float(self.temperature_K.mean()),
                "mean_second_half": float(
                    self.temperature_K[len(self.temperature_K) // 2 :].mean()
                ),
            },
            "total_energy_eV": {
                "initial": float(self.total_energy[0]),
                "final": float(self.total_energy[-1]),
            },
            "drift": self.drift,
            "wall_s": self.wall_s,
            "ms_per_step": 1000.0 * self.wall_s / max(len(self.time_fs) - 1, 1),
        }


def energy_drift(time_fs: np.ndarray, total_energy: np.ndarray, n_atoms: int) -> dict[str, float]:
    """How far the total energy wanders in an NVE run.

    Args:
        time_fs: time of each sample (fs).
        total_energy: total energy of each sample (eV).
        n_atoms: atoms in the system (for per-atom figures).

    Returns:
        ``drift_meV_per_atom_per_ps`` (slope of a least-squares line through the total energy
        per atom), ``max_abs_dE_eV`` (largest |E(t) − E(0)|) and ``max_abs_dE_meV_per_atom``.
    """
    t = np.asarray(time_fs, dtype=np.float64) / 1000.0  # ps
    e = np.asarray(total_energy, dtype=np.float64)
    if len(t) != len(e) or len(t) < 2:
        raise ValueError(f"need at least two samples of time and energy, got {len(t)}, {len(e)}.")
    slope = np.polyfit(t, e / n_atoms, 1)[0]  # eV / atom / ps
    max_de = float(np.max(np.abs(e - e[0])))
    return {
        "drift_meV_per_atom_per_ps": float(1000.0 * slope),
        "max_abs_dE_eV": max_de,
        "max_abs_dE_meV_per_atom": 1000.0 * max_de / n_atoms,
    }


def _frame(atoms: Atoms, step: int, time_fs: float, epot: float, ekin: float) -> Atoms:
    """A snapshot with energy, forces, momenta and the step's observables in ``info``."""
    frame = atoms.copy()  # keeps momenta, tags, constraints and info
    forces = atoms.get_forces(apply_constraint=False)
    frame.calc = SinglePointCalculator(frame, energy=epot, forces=forces)
    frame.info.update(
        md_step=step,
        time_fs=time_fs,
        temperature_K=float(atoms.get_temperature()),
        kinetic_energy=ekin,
        total_energy=epot + ekin,
    )
    return frame


def _integrator(
    atoms: Atoms,
    ensemble: str,
    timestep_fs: float,
    temperature_K: float,
    friction_per_fs: float,
    rng: np.random.Generator,
) -> VelocityVerlet | Langevin:
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt, logfile=None)
    # fixcm=False: fixed slab atoms already pin the frame, and ASE is retiring fixcm
    return Langevin(
        atoms,
        timestep=dt,
        temperature_K=temperature_K,
        friction=friction_per_fs / units.fs,
        fixcm=False,
        rng=rng,
        logfile=None,
    )


def _check(
    ensemble: str, timestep_fs: float, steps: int, temperature_K: float, friction: float, every: int
) -> None:
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble={ensemble!r}: choose one of {', '.join(ENSEMBLES)}.")
    if not (math.isfinite(timestep_fs) and timestep_fs > 0):
        raise ValueError(f"timestep_fs={timestep_fs}: must be a positive number of fs (e.g. 1).")
    if steps < 1:
        raise ValueError(f"steps={steps}: must be at least 1.")
    if every < 1:
        raise ValueError(f"interval={every}: must be at least 1 (write every k-th step).")
    if not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise ValueError(f"temperature_K={temperature_K}: must be >= 0 K.")
    if ensemble == "langevin" and not (math.isfinite(friction) and friction > 0):
        raise ValueError(f"friction={friction}: must be > 0 per fs for Langevin (e.g. 0.01).")


def run_md(
    atoms: Atoms,
    calculator: Calculator,
    *,
    ensemble: str = "nve",
    timestep_fs: float = 1.0,
    steps: int = 100,
    temperature_K: float = 300.0,
    initial_temperature_K: float | None = None,
    friction_per_fs: float = 0.01,
    interval: int = 10,
    seed: int = 0,
    trajectory: str | os.PathLike | None = None,
) -> MDResult:
    """Run NVE or Langevin dynamics of one structure; the input ``atoms`` is left unchanged.

    Args:
        atoms: the structure (its ``FixAtoms`` constraints hold; its momenta are used only when
            the initial temperature is 0).
        calculator: an ASE calculator, e.g. ``EqV2Calculator``.
        ensemble: ``"nve"`` (velocity Verlet) or ``"langevin"`` (NVT at ``temperature_K``).
        timestep_fs: time step (fs).
        steps: number of steps.
        temperature_K: Langevin target; also the initial temperature unless
            ``initial_temperature_K`` is given.
        initial_temperature_K: Maxwell-Boltzmann temperature of the initial velocities
            (0 keeps the input's momenta, zero if it has none).
        friction_per_fs: Langevin friction (1/fs).
        interval: write every ``interval``-th step (and the last one) to ``trajectory``.
        seed: seeds the initial velocities and the Langevin noise.
        trajectory: extxyz file to write, or None.

    Returns:
        `MDResult` with per-step energies and temperature, and the NVE drift.

    Raises:
        ValueError: a bad parameter, a structure the model cannot handle (from the
            calculator), or a non-finite energy (the step and a fix are named). No trajectory
            file is left behind then.
    """
    _check(ensemble, timestep_fs, steps, temperature_K, friction_per_fs, interval)
    velocity_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    atoms = atoms.copy()
    atoms.calc = calculator
    fixed = fixed_mask(atoms)
    t0 = temperature_K if initial_temperature_K is None else float(initial_temperature_K)
    if not (math.isfinite(t0) and t0 >= 0):
        raise ValueError(f"initial_temperature_K={t0}: must be >= 0 K.")
    if t0 > 0:
        thermalize_momenta(atoms, t0, rng=np.random.default_rng(velocity_seed))
        if not fixed.any():
            Stationary(atoms)  # no centre-of-mass drift for a free structure
    dyn = _integrator(
        atoms,
        ensemble,
        timestep_fs,
        temperature_K,
        friction_per_fs,
        np.random.default_rng(noise_seed),
    )
    n = steps + 1
    series = {k: np.zeros(n) for k in ("time", "epot", "ekin", "temp")}
    frames_written = 0
    handle = None

    def record() -> None:
        nonlocal frames_written
        step = dyn.nsteps
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        if not (math.isfinite(epot) and math.isfinite(ekin)):
            raise ValueError(
                f"MD diverged at step {step}: potential energy {epot} eV, kinetic {ekin} eV. "
                "Fix: a smaller --timestep-fs, a lower temperature, or check the structure."
            )
        series["time"][step] = step * timestep_fs
        series["epot"][step], series["ekin"][step] = epot, ekin
        series["temp"][step] = atoms.get_temperature()
        if handle is not None and (step % interval == 0 or step == steps):
            ase_write(handle, _frame(atoms, step, step * timestep_fs, epot, ekin), format="extxyz")
            frames_written += 1

    dyn.attach(record, interval=1)  # ASE calls observers at step 0 too
    start = time.perf_counter()
    if trajectory is None:
        dyn.run(steps)
    else:
        with atomic_write_path(trajectory) as tmp, open(tmp, "w") as handle:
            dyn.run(steps)
    wall = time.perf_counter() - start
    total = series["epot"] + series["ekin"]
    settings = {
        "ensemble": ensemble,
        "timestep_fs": timestep_fs,
        "steps": steps,
        "temperature_K": temperature_K,
        "initial_temperature_K": t0,
        "friction_per_fs": friction_per_fs if ensemble == "langevin" else None,
        "interval": interval,
        "seed": seed,
        "n_atoms": len(atoms),
        "n_fixed": int(fixed.sum()),
        "formula": atoms.get_chemical_formula(),
    }
    return MDResult(
        time_fs=series["time"],
        potential_energy=series["epot"],
        kinetic_energy=series["ekin"],
        total_energy=total,
        temperature_K=series["temp"],
        frames_written=frames_written,
        drift=energy_drift(series["time"], total, len(atoms)) if ensemble == "nve" else None,
        settings=settings,
        wall_s=wall,
    )
