"""What an MD run records and writes, shared by eqv2's MD engines (ASE's integrators in
`eqv2.simulate.md`, torch-sim's in `eqv2.simulate.torchsim`).

`MDResult` holds the per-step observables and where the run ended; `trajectory_writer` streams
extxyz frames so that every complete frame survives however the run stops; `check_finite` and
`raise_if_stopped` turn a diverged or interrupted run into `MDDiverged` / `MDInterrupted`
carrying the steps done.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write as ase_write

from eqv2.safe_io import atomic_write_path

__all__ = [
    "SERIES",
    "Divergence",
    "FrameWriter",
    "MDDiverged",
    "MDInterrupted",
    "MDResult",
    "check_finite",
    "energy_drift",
    "md_frame",
    "md_result",
    "raise_if_stopped",
    "trajectory_writer",
]


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
