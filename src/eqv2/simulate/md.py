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
from collections.abc import Iterator
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


__all__ = ["ENSEMBLES", "MDDiverged", "MDInterrupted", "MDResult", "energy_drift", "run_md"]

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
        ended: where the run ended: ``reason`` (``"completed"``, ``"diverged"`` or
            ``"interrupted"``), ``last_step`` (the last step recorded) and ``message``.
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
    ended: dict[str, Any] = field(default_factory=dict)

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
            "ended": self.ended,
        }


class MDDiverged(ValueError):
    """The energy or forces became non-finite; ``result`` holds the steps before (their frames
    are in the trajectory), None when it happened at step 0."""

    def __init__(self, message: str, result: MDResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class MDInterrupted(KeyboardInterrupt):
    """The run was interrupted (Ctrl-C, or a signal the caller turned into KeyboardInterrupt);
    ``result`` holds the steps done (their frames are in the trajectory); for a batched run
    (`eqv2.simulate.torchsim.run_md_batch`) a list with one entry per structure, None for
    those not started."""

    def __init__(self, message: str, result: MDResult | list[MDResult | None]) -> None:
        super().__init__(message)
        self.result = result


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


def md_frame(
    atoms: Atoms,
    forces: np.ndarray,
    step: int,
    time_fs: float,
    epot: float,
    ekin: float,
    temperature_K: float,
) -> Atoms:
    """A trajectory frame: a copy of ``atoms`` (positions, cell, momenta, tags, constraints)
    with energy and forces attached and the step's observables in ``info``."""
    frame = atoms.copy()
    frame.calc = SinglePointCalculator(frame, energy=epot, forces=forces)
    frame.info.update(
        md_step=step,
        time_fs=time_fs,
        temperature_K=temperature_K,
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


class Divergence(ValueError):
    """Raised by a run's per-step check when the energy or forces are not finite."""


class _NoFrames(Exception):
    """No frame was written: leave no trajectory file."""


class FrameWriter:
    """Appends extxyz frames to an open file; ``complete`` is the byte size after the last whole
    frame, so a frame cut short by an interrupt can be truncated away."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.frames = 0
        self.complete = 0

    def write(self, frame: Atoms) -> None:
        ase_write(self.handle, frame, format="extxyz")
        self.handle.flush()
        # one statement: an interrupt lands before or after both updates
        self.complete, self.frames = self.handle.tell(), self.frames + 1


@contextlib.contextmanager
def trajectory_writer(path: str | os.PathLike) -> Iterator[FrameWriter]:
    """Stream extxyz frames to a temporary file beside ``path``; on exit every complete frame
    replaces ``path`` atomically (a frame cut short is truncated away) and a run that wrote no
    frame leaves no file. The body must catch its own errors (an exception escaping it discards
    the file): record them and re-raise after the ``with``."""
    with contextlib.suppress(_NoFrames), atomic_write_path(path) as tmp:
        with open(tmp, "w") as handle:
            writer = FrameWriter(handle)
            yield writer
            handle.truncate(writer.complete)  # drop a frame an interrupt cut short
        if writer.frames == 0:
            raise _NoFrames  # atomic_write_path removes the empty temporary file


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


def md_result(
    series: dict[str, np.ndarray],
    *,
    last: int,
    steps: int,
    n_atoms: int,
    frames: int,
    settings: dict[str, Any],
    wall_s: float,
    stop: BaseException | None,
) -> MDResult:
    """The `MDResult` of steps 0..``last`` of per-step ``series`` (``time``, ``epot``,
    ``ekin``, ``temp``); ``stop`` is why the run ended early (None: it completed, a
    `Divergence` or a ``KeyboardInterrupt``). The NVE drift is computed from the total energy."""
    done = {k: v[: last + 1] for k, v in series.items()}
    total = done["epot"] + done["ekin"]
    if stop is None:
        reason, message = "completed", f"completed all {steps} steps"
    elif isinstance(stop, Divergence):
        reason, message = "diverged", str(stop)
    else:
        reason, message = "interrupted", f"interrupted after step {last} of {steps}"
    nve = settings["ensemble"] == "nve" and last >= 1
    return MDResult(
        time_fs=done["time"],
        potential_energy=done["epot"],
        kinetic_energy=done["ekin"],
        total_energy=total,
        temperature_K=done["temp"],
        frames_written=frames,
        drift=energy_drift(done["time"], total, n_atoms) if nve else None,
        settings=settings,
        wall_s=wall_s,
        ended={"reason": reason, "last_step": last, "message": message},
    )


#: Per-step series a run records: time (fs), potential and kinetic energy (eV), temperature (K).
SERIES = ("time", "epot", "ekin", "temp")


def initial_temperature(temperature_K: float, initial_temperature_K: float | None) -> float:
    """The Maxwell-Boltzmann temperature of the initial velocities (checked)."""
    t0 = temperature_K if initial_temperature_K is None else float(initial_temperature_K)
    if not (math.isfinite(t0) and t0 >= 0):
        raise ValueError(f"initial_temperature_K={t0}: must be >= 0 K.")
    return t0


def check_finite(step: int, epot: float, ekin: float, forces: np.ndarray) -> None:
    """Raise `Divergence` naming the step and what went non-finite, with the fix."""
    bad = np.flatnonzero(~np.isfinite(forces).all(axis=1))
    if math.isfinite(epot) and math.isfinite(ekin) and not len(bad):
        return
    what = f"potential energy {epot} eV, kinetic {ekin} eV"
    if len(bad):
        what += f", non-finite forces on {len(bad)} atom(s) (first: atom {bad[0]})"
    raise Divergence(
        f"MD diverged at step {step}: {what}. Fix: a smaller --timestep-fs, a lower "
        "temperature, or check the structure."
    )


def raise_if_stopped(result: MDResult, stop: BaseException | None) -> None:
    """Raise `MDDiverged` or `MDInterrupted` carrying ``result`` when the run ended early."""
    if result.ended["reason"] == "diverged":
        raise MDDiverged(result.ended["message"], result) from stop
    if result.ended["reason"] == "interrupted":
        raise MDInterrupted(result.ended["message"], result) from stop


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
    velocity_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
    atoms = atoms.copy()
    atoms.calc = calculator
    fixed = fixed_mask(atoms)
    t0 = initial_temperature(temperature_K, initial_temperature_K)
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
