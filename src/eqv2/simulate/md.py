"""Molecular dynamics with an eqv2 model: ASE's velocity Verlet (NVE) and Langevin (NVT).

`run_md` drives one structure with any ASE calculator (normally `EqV2Calculator`), records the
potential, kinetic and total energy and the temperature at every step, writes every
``interval``-th frame to an extxyz trajectory and, for NVE, reports the energy drift
(`energy_drift`).

Frames are streamed to a temporary file beside the target. However the run stops (it finishes,
diverges, is interrupted by ``KeyboardInterrupt`` or fails), every frame written completely so
far is kept: a frame cut short is truncated away and the file replaces the target atomically. A
run that stops early raises `MDDiverged` or `MDInterrupted`, whose ``result`` holds the steps done
and says where the run ended (``MDResult.ended``).

Runs are deterministic for a given seed: the Maxwell-Boltzmann initial velocities and the
Langevin noise draw from their own ``numpy`` generators spawned from ``SeedSequence(seed)``.

Energy is conserved only by a model whose forces are −dE/dx (``direct_forces=False``); the
direct force head of the released EquiformerV2 models is not a gradient, and NVE with it drifts.
The drift report is how to see it.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from eqv2.graph import fixed_mask
from eqv2.simulate.md_results import (  # re-exported: the engines' shared records
    SERIES,
    Divergence,
    FrameWriter,
    MDDiverged,
    MDInterrupted,
    MDResult,
    check_finite,
    energy_drift,
    md_frame,
    md_result,
    raise_if_stopped,
    trajectory_writer,
)

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ase < 3.29 names it MaxwellBoltzmannDistribution
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms: Atoms, temperature_K: float, *, rng=None) -> None:
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


__all__ = [
    "ENSEMBLES",
    "MDDiverged",
    "MDInterrupted",
    "MDResult",
    "energy_drift",
    "run_md",
    "thermalize",
]

#: Ensembles `run_md` knows: ``"nve"`` (velocity Verlet) and ``"langevin"`` (NVT).
ENSEMBLES = ("nve", "langevin")


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


def check_md_args(
    ensemble: str,
    timestep_fs: float,
    steps: int,
    temperature_K: float,
    friction: float,
    every: int,
    ensembles: tuple[str, ...] = ENSEMBLES,
) -> None:
    """Refuse bad run parameters before any work (``ensembles``: what the engine knows)."""
    if ensemble not in ensembles:
        raise ValueError(f"ensemble={ensemble!r}: choose one of {', '.join(ensembles)}.")
    if not (math.isfinite(timestep_fs) and timestep_fs > 0):
        raise ValueError(f"timestep_fs={timestep_fs}: must be a positive number of fs (e.g. 1).")
    if steps < 1:
        raise ValueError(f"steps={steps}: must be at least 1.")
    if every < 1:
        raise ValueError(f"interval={every}: must be at least 1 (write every k-th step).")
    if not (math.isfinite(temperature_K) and temperature_K >= 0):
        raise ValueError(f"temperature_K={temperature_K}: must be >= 0 K.")
    if ensemble != "nve" and not (math.isfinite(friction) and friction > 0):
        raise ValueError(f"friction={friction}: must be > 0 per fs for {ensemble} (e.g. 0.01).")


def _run(
    dyn: VelocityVerlet | Langevin,
    steps: int,
    record: Any,
    trajectory: str | os.PathLike | None,
) -> tuple[BaseException | None, FrameWriter | None]:
    """Run ``steps`` steps; return why the run stopped early (None: it did not) and the writer.

    The trajectory keeps every complete frame however the run stops; a run that wrote no frame
    leaves no file.
    """
    stop: BaseException | None = None
    with contextlib.ExitStack() as stack:
        writer = None if trajectory is None else stack.enter_context(trajectory_writer(trajectory))
        dyn.attach(record, interval=1, writer=writer)  # ASE calls observers at step 0 too
        try:
            dyn.run(steps)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - reported by run_md
            stop = exc
    return stop, writer


def initial_temperature(temperature_K: float, initial_temperature_K: float | None) -> float:
    """The Maxwell-Boltzmann temperature of the initial velocities (checked)."""
    t0 = temperature_K if initial_temperature_K is None else float(initial_temperature_K)
    if not (math.isfinite(t0) and t0 >= 0):
        raise ValueError(f"initial_temperature_K={t0}: must be >= 0 K.")
    return t0


def _seed_streams(seed: int) -> list[np.random.SeedSequence]:
    """A run's independent random streams: initial velocities, then Langevin noise."""
    return np.random.SeedSequence(seed).spawn(2)


def thermalize(atoms: Atoms, temperature_K: float, seed: int) -> None:
    """Give ``atoms`` (in place) the Maxwell-Boltzmann momenta at ``temperature_K`` (> 0) that
    every eqv2 MD engine draws for ``seed``; a structure without fixed atoms also loses its
    centre-of-mass motion (fixed atoms already pin its frame)."""
    velocity_rng = np.random.default_rng(_seed_streams(seed)[0])
    thermalize_momenta(atoms, temperature_K, rng=velocity_rng)
    if not fixed_mask(atoms).any():
        Stationary(atoms)


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
        MDDiverged: the energy or forces became non-finite (the step and a fix are named);
            its ``result`` holds the steps before, whose frames are kept in ``trajectory``.
        MDInterrupted: a ``KeyboardInterrupt`` stopped the run; ``result`` as above.
        ValueError: a bad parameter, or a structure the model cannot handle (from the
            calculator). A trajectory is left only if some frames were complete.
    """
    check_md_args(ensemble, timestep_fs, steps, temperature_K, friction_per_fs, interval)
    noise_seed = _seed_streams(seed)[1]
    atoms = atoms.copy()
    atoms.calc = calculator
    fixed = fixed_mask(atoms)
    t0 = initial_temperature(temperature_K, initial_temperature_K)
    if t0 > 0:
        thermalize(atoms, t0, seed)
    dyn = _integrator(
        atoms,
        ensemble,
        timestep_fs,
        temperature_K,
        friction_per_fs,
        np.random.default_rng(noise_seed),
    )
    series = {k: np.zeros(steps + 1) for k in SERIES}
    state = {"last": -1}  # the last step recorded

    def record(writer: FrameWriter | None) -> None:
        step = dyn.nsteps
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        forces = atoms.get_forces(apply_constraint=False)
        check_finite(step, epot, ekin, forces)
        temp = float(atoms.get_temperature())
        series["time"][step] = step * timestep_fs
        series["epot"][step], series["ekin"][step], series["temp"][step] = epot, ekin, temp
        state["last"] = step
        if writer is not None and (step % interval == 0 or step == steps):
            writer.write(md_frame(atoms, forces, step, step * timestep_fs, epot, ekin, temp))

    start = time.perf_counter()
    stop, writer = _run(dyn, steps, record, trajectory)
    wall = time.perf_counter() - start
    last = state["last"]
    if stop is not None and last < 0:  # nothing computed (e.g. the model refused the structure)
        if isinstance(stop, Divergence):
            raise MDDiverged(str(stop)) from None
        raise stop
    if stop is not None and not isinstance(stop, (Divergence, KeyboardInterrupt)):
        raise stop  # any other error: the frames so far are kept, the error is the caller's
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
    result = md_result(
        series,
        last=last,
        steps=steps,
        n_atoms=len(atoms),
        frames=0 if writer is None else writer.frames,
        settings=settings,
        wall_s=wall,
        stop=stop,
    )
    raise_if_stopped(result, stop)
    return result
