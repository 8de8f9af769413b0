"""Batched MD of many structures through torch-sim's integrators, with `eqv2 md`'s outputs.

`run_md_batch` puts the structures into bins with torch-sim's ``BinningAutoBatcher`` (every
structure runs the same number of steps, so fixed bins are what torch-sim's own ``integrate``
uses; relaxations, which finish at different times, use the ``InFlightAutoBatcher``: see
`eqv2.simulate.torchsim.relax`), advances each bin with ``nve`` (velocity Verlet),
``nvt_langevin`` (BAOAB Langevin) or ``npt_langevin`` (isotropic Langevin barostat), and
records per structure what `eqv2.simulate.md.run_md` records: potential, kinetic and total
energy and temperature at every step, the NVE drift, and every ``interval``-th frame streamed to
an extxyz file that replaces its target atomically and keeps every complete frame however the
run stops.

Units: ASE's (Å, eV, amu; time in ASE's unit √(amu·Å²/eV), which is torch-sim's "metal" time
unit too, so momenta pass between them unchanged).

Seeds: structure ``k`` of a batch gets the initial velocities that ``run_md(..., seed=seed +
k)`` draws (the same numpy generator), so a structure's NVE run is the same alone or in any
batch, and the same as the ASE engine's up to round-off. The Langevin noise comes from torch's
generator, seeded with ``seed`` for the run (and restored after): the same structures, batching
and seed give the same run.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms, units
from torch_sim.autobatching import BinningAutoBatcher, calculate_memory_scaler
from torch_sim.quantities import calc_kinetic_energy

from eqv2.simulate.md import check_md_args, initial_temperature, thermalize
from eqv2.simulate.md_results import (
    SERIES,
    Divergence,
    FrameWriter,
    MDDiverged,
    MDInterrupted,
    MDResult,
    check_finite,
    md_frame,
    md_result,
    trajectory_writer,
)
from eqv2.simulate.torchsim.model import EqV2TorchSimModel
from eqv2.simulate.torchsim.state import check_structures, state_from_atoms

__all__ = ["TORCHSIM_ENSEMBLES", "initial_momenta", "run_md_batch", "run_md_torchsim"]

#: Ensembles of the torch-sim engine: velocity Verlet, Langevin NVT, Langevin NPT.
TORCHSIM_ENSEMBLES = ("nve", "langevin", "npt")


def initial_momenta(atoms: Atoms, temperature_K: float, seed: int) -> np.ndarray:
    """Maxwell-Boltzmann momenta (amu·Å per ASE time unit) as ``run_md`` draws them for
    ``seed``, centre-of-mass motion removed; the input's momenta when ``temperature_K`` is 0."""
    atoms = atoms.copy()
    if temperature_K > 0:
        thermalize(atoms, temperature_K, seed)
    return atoms.get_momenta()


def _integrator(
    model: EqV2TorchSimModel,
    ensemble: str,
    timestep_fs: float,
    temperature_K: float,
    friction_per_fs: float,
    pressure_GPa: float,
) -> tuple[Callable, Callable]:
    """torch-sim's (init, update) pair; every quantity in ASE's units."""

    def scalar(value: float) -> torch.Tensor:
        return torch.tensor(value, device=model.device, dtype=model.dtype)

    dt, kT = scalar(timestep_fs * units.fs), scalar(temperature_K * units.kB)
    if ensemble == "nve":
        return ts.nve(model=model, dt=dt, kT=kT)
    friction = scalar(friction_per_fs / units.fs)
    if ensemble == "langevin":
        return ts.nvt_langevin(model=model, dt=dt, kT=kT, gamma=friction)
    return ts.npt_langevin(
        model=model,
        dt=dt,
        kT=kT,
        external_pressure=scalar(pressure_GPa * units.GPa),
        alpha=friction,
    )


def _batcher(
    model: EqV2TorchSimModel, states: list[ts.SimState], periodic: bool, limit: float | None
) -> BinningAutoBatcher:
    # an open structure has no volume, hence no density: count atoms for it
    scales = model.memory_scales_with if periodic else "n_atoms"
    if limit is None and model.device.type == "cpu":  # torch-sim measures memory on GPUs only
        limit = sum(calculate_memory_scaler(s, scales) for s in states) * (1 + 1e-9)
    batcher = BinningAutoBatcher(
        model=model, memory_scales_with=scales, max_memory_scaler=limit, return_indices=True
    )
    batcher.load_states(states)
    return batcher


class _Recorder:
    """Per-structure series and frames of one bin of a batched run."""

    def __init__(
        self,
        structures: list[Atoms],
        series: list[dict[str, np.ndarray]],
        writers: list[FrameWriter | None],
        timestep_fs: float,
        steps: int,
        interval: int,
        labels: list[int],
    ) -> None:
        self.structures, self.series, self.writers = structures, series, writers
        self.timestep_fs, self.steps, self.interval = timestep_fs, steps, interval
        self.labels = labels
        self.last = -1

    def __call__(self, state: Any, step: int) -> None:
        counts = state.n_atoms_per_system.tolist()
        bounds = np.cumsum([0, *counts])
        epot = state.energy.detach().double().cpu().numpy()
        ekin = (
            calc_kinetic_energy(
                masses=state.masses, momenta=state.momenta, system_idx=state.system_idx
            )
            .double()
            .cpu()
            .numpy()
        )
        forces = state.forces.detach().double().cpu().numpy()
        for k, label in enumerate(self.labels):
            try:
                check_finite(
                    step, float(epot[k]), float(ekin[k]), forces[bounds[k] : bounds[k + 1]]
                )
            except Divergence as exc:
                raise Divergence(f"structure {label}: {exc}") from None
        temp = 2.0 * ekin / (3.0 * np.asarray(counts) * units.kB)
        t_fs = step * self.timestep_fs
        for k, series in enumerate(self.series):
            series["time"][step] = t_fs
            series["epot"][step], series["ekin"][step] = epot[k], ekin[k]
            series["temp"][step] = temp[k]
        self.last = step
        if step % self.interval and step != self.steps:
            return
        positions = state.positions.detach().double().cpu().numpy()
        momenta = state.momenta.detach().double().cpu().numpy()
        cells = state.cell.detach().transpose(-1, -2).double().cpu().numpy()
        for k, writer in enumerate(self.writers):
            if writer is None:
                continue
            atoms = self.structures[k].copy()
            atoms.positions = positions[bounds[k] : bounds[k + 1]]
            atoms.cell = cells[k]
            atoms.set_momenta(momenta[bounds[k] : bounds[k + 1]])
            f = forces[bounds[k] : bounds[k + 1]]
            writer.write(md_frame(atoms, f, step, t_fs, float(epot[k]), float(ekin[k]), temp[k]))


def run_md_batch(
    structures: Sequence[Atoms],
    model: EqV2TorchSimModel,
    *,
    ensemble: str = "nve",
    timestep_fs: float = 1.0,
    steps: int = 100,
    temperature_K: float = 300.0,
    initial_temperature_K: float | None = None,
    friction_per_fs: float = 0.01,
    pressure_GPa: float = 0.0,
    interval: int = 10,
    seed: int = 0,
    trajectories: Sequence[str | os.PathLike] | None = None,
    max_memory_scaler: float | None = None,
    seeds: Sequence[int] | None = None,
) -> list[MDResult]:
    """MD of many structures at once through torch-sim; the inputs are left unchanged.

    Args:
        structures: ``ase.Atoms``, all periodic (pbc all True) or all open; no fixed atoms
            (torch-sim 0.3 has no constraints: use `eqv2.simulate.md.run_md` for those).
        model: the torch-sim wrapper of an eqv2 potential.
        ensemble: ``"nve"``, ``"langevin"`` (NVT at ``temperature_K``) or ``"npt"``
            (Langevin thermostat and isotropic barostat at ``pressure_GPa``; needs a model
            with stress and periodic structures).
        timestep_fs, steps, temperature_K, initial_temperature_K, friction_per_fs, interval:
            as in `eqv2.simulate.md.run_md` (the friction also damps the NPT particles).
        pressure_GPa: NPT target pressure.
        seed: structure ``k`` starts from ``run_md``'s velocities for ``seed + k`` (unless
            ``seeds`` is given); seeds the Langevin noise.
        trajectories: one extxyz path per structure, or None.
        max_memory_scaler: the autobatcher's budget (sum of per-structure ``n_atoms`` or
            ``n_atoms_x_density`` in a bin); default: measured on a GPU, everything in one
            bin on a CPU.
        seeds: one velocity seed per structure in place of ``seed + k`` (``eqv2 md
            --indices`` gives structure ``i`` of its input ``seed + i``, so a selection starts
            each structure as ``--index i`` does).

    Returns:
        One `MDResult` per structure in input order. A bin in which a structure's energy or
        forces become non-finite stops there: its results end ``"diverged"`` (the message names
        the structure and step) and the remaining bins still run.

    Raises:
        MDInterrupted: on ``KeyboardInterrupt``; ``result`` is the list of results so far (None
            for structures not started); every complete frame is kept.
        MDDiverged: non-finite energy or forces at step 0 (nothing to keep).
        ValueError: bad parameters or structures (nothing is written).
    """
    check_md_args(
        ensemble, timestep_fs, steps, temperature_K, friction_per_fs, interval, TORCHSIM_ENSEMBLES
    )
    structures = [a.copy() for a in structures]
    periodic = check_structures(structures)
    if trajectories is not None and len(trajectories) != len(structures):
        raise ValueError(
            f"{len(trajectories)} trajectory paths for {len(structures)} structures; give one "
            "per structure (or None)."
        )
    if ensemble == "npt":
        if not (model.compute_stress and periodic):
            raise ValueError(
                "ensemble='npt' needs a model with stress (compute_stress) and periodic "
                "structures. Fix: use nve or langevin, or a model with a stress head or "
                "conservative forces."
            )
        if not math.isfinite(pressure_GPa):
            raise ValueError(f"pressure_GPa={pressure_GPa}: must be a finite number.")
    if seeds is None:
        seeds = [seed + k for k in range(len(structures))]
    elif len(seeds) != len(structures):
        raise ValueError(
            f"{len(seeds)} seeds for {len(structures)} structures; give one per structure "
            "(or None for seed + k)."
        )
    seeds = [int(s) for s in seeds]
    t0 = initial_temperature(temperature_K, initial_temperature_K)
    momenta = [initial_momenta(a, t0, seeds[k]) for k, a in enumerate(structures)]
    states = [state_from_atoms(a, model.device, model.dtype) for a in structures]
    batcher = _batcher(model, states, periodic, max_memory_scaler)
    init, update = _integrator(
        model, ensemble, timestep_fs, temperature_K, friction_per_fs, pressure_GPa
    )
    results: list[MDResult | None] = [None] * len(structures)
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for sub_state, indices in batcher:
            sub_state.momenta = torch.as_tensor(
                np.concatenate([momenta[i] for i in indices]),
                device=model.device,
                dtype=model.dtype,
            )
            stop = _run_bin(
                sub_state, indices, structures, init, update, results, trajectories,
                settings=dict(ensemble=ensemble, timestep_fs=timestep_fs, steps=steps,
                              temperature_K=temperature_K, initial_temperature_K=t0,
                              friction_per_fs=None if ensemble == "nve" else friction_per_fs,
                              pressure_GPa=pressure_GPa if ensemble == "npt" else None,
                              interval=interval, engine="torchsim"),
                seeds=seeds,
            )  # fmt: skip
            if isinstance(stop, KeyboardInterrupt):
                done = [r for r in results if r is not None]
                message = f"interrupted; {len(done)} of {len(structures)} structures started"
                raise MDInterrupted(message, results) from stop
    return results  # type: ignore[return-value]  # every bin ran


def _run_bin(
    state: ts.SimState,
    indices: list[int],
    structures: list[Atoms],
    init: Callable,
    update: Callable,
    results: list[MDResult | None],
    trajectories: Sequence[str | os.PathLike] | None,
    *,
    settings: dict[str, Any],
    seeds: list[int],
) -> BaseException | None:
    """Run one bin, fill ``results[i]`` for its structures; return a KeyboardInterrupt that
    stopped it (other errors are raised once the complete frames are kept)."""
    steps = settings["steps"]
    series = [{k: np.zeros(steps + 1) for k in SERIES} for _ in indices]
    stop: BaseException | None = None
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writers = [
            None
            if trajectories is None
            else stack.enter_context(trajectory_writer(trajectories[i]))
            for i in indices
        ]
        record = _Recorder(
            [structures[i] for i in indices],
            series,
            writers,
            settings["timestep_fs"],
            steps,
            settings["interval"],
            indices,
        )
        try:
            md_state = init(state)
            record(md_state, 0)
            for step in range(1, steps + 1):
                md_state = update(md_state)
                record(md_state, step)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - sorted out below
            stop = exc
    wall = time.perf_counter() - start
    if stop is not None and record.last < 0:  # nothing computed
        if isinstance(stop, Divergence):
            raise MDDiverged(str(stop)) from None
        raise stop
    if stop is not None and not isinstance(stop, (Divergence, KeyboardInterrupt)):
        raise stop  # the frames so far are kept, the error is the caller's
    for k, i in enumerate(indices):
        atoms = structures[i]
        results[i] = md_result(
            series[k],
            last=record.last,
            steps=steps,
            n_atoms=len(atoms),
            frames=0 if writers[k] is None else writers[k].frames,
            settings={
                **settings,
                "seed": seeds[i],
                "n_atoms": len(atoms),
                "n_fixed": 0,
                "formula": atoms.get_chemical_formula(),
                "structures_in_batch": len(indices),
            },
            wall_s=wall,
            stop=stop,
        )
    return stop if isinstance(stop, KeyboardInterrupt) else None


def run_md_torchsim(atoms: Atoms, model: EqV2TorchSimModel, **kwargs: Any) -> MDResult:
    """One structure through torch-sim with `eqv2.simulate.md.run_md`'s contract.

    Takes `run_md_batch`'s keyword arguments, with ``trajectory`` (one path or None) in place
    of ``trajectories``. Raises `MDDiverged` / `MDInterrupted` carrying the run's `MDResult`
    when it stops early, as ``run_md`` does.
    """
    trajectory = kwargs.pop("trajectory", None)
    paths = None if trajectory is None else [trajectory]
    try:
        result = run_md_batch([atoms], model, trajectories=paths, **kwargs)[0]
    except MDInterrupted as exc:
        (result,) = exc.result
        raise MDInterrupted(result.ended["message"], result) from exc
    if result.ended["reason"] == "diverged":
        raise MDDiverged(result.ended["message"], result)
    return result
