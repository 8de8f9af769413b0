"""``eqv2 md CHECKPOINT INPUT -o TRAJ.extxyz``: NVE, Langevin or (torch-sim) NPT dynamics.

``--engine ase`` (default) drives ASE's integrators; ``--engine torchsim`` torch-sim's (extra
``eqv2[torchsim]``), with the same outputs. ``--indices`` runs many structures of INPUT as one
torch-sim batch, one trajectory each (`eqv2.cli.md_batch`).

Ctrl-C (SIGINT), SIGTERM and a diverging run keep every frame written so far; the report says
where the run ended. Exit status: 0 completed, 1 diverged, 130 SIGINT, 143 SIGTERM, 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from eqv2.cli.io import add_input_argument
from eqv2.cli.model_args import add_model_arguments, load_potential


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "md",
        help="molecular dynamics (NVE velocity Verlet, Langevin, NPT) with a checkpoint",
        description=(
            "Run MD of one structure with an eqv2 or fairchem checkpoint through ASE (default) "
            "or torch-sim (--engine torchsim, which also offers --ensemble npt), or of many "
            "structures as one torch-sim batch (--indices with --engine torchsim). Writes "
            "every --interval-th frame (energy, forces, momenta, temperature) to OUTPUT and a "
            "JSON report (temperatures; for NVE the energy drift in meV/atom/ps and the largest "
            "|E(t) - E(0)|). Energy is conserved only by a model with forces = -dE/dx "
            "(direct_forces: false); the drift report shows how far a direct-force model strays. "
            "Ctrl-C, SIGTERM and a diverging run keep every frame written so far; the report says "
            "where the run ended (exit status 130, 143, 1)."
        ),
    )
    p.add_argument("checkpoint", type=Path, help="eqv2 or fairchem checkpoint (.pt)")
    add_input_argument(p)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="trajectory .extxyz (with --indices: structure i writes OUTPUT's name with .i "
        "before the suffix, e.g. traj.7.extxyz)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, default=0, help="which structure of INPUT (default 0)")
    which.add_argument(
        "--indices",
        metavar="SEL",
        help="run these structures of INPUT as one torch-sim batch (needs --engine torchsim): "
        "integers and slices separated by commas, e.g. ':' (all), '0:16', '0,3,-1'; "
        "structure i starts as --index i --seed SEED+i would",
    )
    p.add_argument(
        "--engine",
        choices=("ase", "torchsim"),
        default="ase",
        help="ASE's integrators (default) or torch-sim's (pip install 'eqv2[torchsim]'; "
        "no fixed atoms, pbc all or none)",
    )
    p.add_argument(
        "--ensemble",
        choices=("nve", "langevin", "npt"),
        default="nve",
        help="npt (Langevin thermostat and barostat) needs --engine torchsim",
    )
    p.add_argument("--timestep-fs", type=float, default=1.0, help="time step (fs)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument(
        "--temperature-K",
        type=float,
        default=300.0,
        help="Langevin target and initial Maxwell-Boltzmann temperature (K)",
    )
    p.add_argument(
        "--initial-temperature-K",
        type=float,
        help="initial temperature if not --temperature-K (0 keeps INPUT's momenta)",
    )
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction (1/fs)")
    p.add_argument("--pressure-GPa", type=float, default=0.0, help="NPT target pressure (GPa)")
    p.add_argument("--interval", type=int, default=10, help="write every k-th step")
    p.add_argument("--seed", type=int, default=0, help="seeds velocities and Langevin noise")
    p.add_argument("--report", type=Path, help="JSON report (default: OUTPUT with .json)")
    add_model_arguments(p)
    p.set_defaults(func=run)


@contextlib.contextmanager
def _sigterm_interrupts(received: list[str]) -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt (as Ctrl-C), so the run stops like an interrupt;
    ``received`` gets the signal's name."""

    def handler(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _md_function(args: argparse.Namespace, potential: Any) -> tuple[Callable, Any, dict]:
    """The engine's single-structure MD function, its model argument and extra options."""
    if args.engine == "ase":
        from eqv2.simulate import EqV2Calculator
        from eqv2.simulate.md import run_md

        if args.ensemble == "npt":
            raise ValueError("--ensemble npt needs --engine torchsim (ASE's engine has none).")
        return run_md, EqV2Calculator(potential, device=args.device), {}
    try:
        from eqv2.simulate.torchsim import EqV2TorchSimModel, run_md_torchsim
    except ImportError as exc:
        raise ValueError(f"--engine torchsim: {exc}") from None
    extra = {"pressure_GPa": args.pressure_GPa}
    return run_md_torchsim, EqV2TorchSimModel(potential), extra


def run(args: argparse.Namespace) -> int:
    if args.indices is not None:
        from eqv2.cli.md_batch import run_batch

        received: list[str] = []
        with _sigterm_interrupts(received):
            return run_batch(args, received, _run_options(args))
    return _run_one(args)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The MD keyword arguments both engines and both paths take from the command line."""
    return dict(
        ensemble=args.ensemble,
        timestep_fs=args.timestep_fs,
        steps=args.steps,
        temperature_K=args.temperature_K,
        initial_temperature_K=args.initial_temperature_K,
        friction_per_fs=args.friction,
        interval=args.interval,
        seed=args.seed,
    )


def _run_one(args: argparse.Namespace) -> int:
    from eqv2.cli.io import check_output, read_one
    from eqv2.simulate.md import MDDiverged, MDInterrupted

    args.output = check_output(args.output, [args.input])
    report_path = check_output(args.report or args.output.with_suffix(".json"), [args.input],
                               flag="--report")  # fmt: skip
    atoms = read_one(args.input, args.index, flag="--index")
    potential = load_potential(args)
    md, model, extra = _md_function(args, potential)
    received: list[str] = []
    code = 0
    try:
        with _sigterm_interrupts(received):
            result = md(atoms, model, trajectory=args.output, **_run_options(args), **extra)
    except MDInterrupted as exc:
        result = exc.result
        name = received[0] if received else "SIGINT"
        result.ended.update(signal=name, message=f"{result.ended['message']} ({name})")
        code = 128 + int(getattr(signal, name))
    except MDDiverged as exc:
        if exc.result is None:  # at step 0: nothing to keep, a plain error (exit status 2)
            raise
        result, code = exc.result, 1
    report = result.summary()
    report["settings"].update(
        checkpoint=str(args.checkpoint),
        input=str(args.input),
        index=args.index,
        float64=args.dtype == "float64",
        model_conservative=potential.conservative,
        engine=args.engine,
    )
    from eqv2.safe_io import write_json

    write_json(report, report_path)
    t = report["temperature_K"]
    print(
        f"{args.ensemble} MD of {report['settings']['formula']}: {report['steps']} steps of "
        f"{args.timestep_fs:g} fs ({report['time_fs']:g} fs), {report['ms_per_step']:.1f} ms/step"
    )
    print(
        f"temperature (K): initial {t['initial']:.1f}, final {t['final']:.1f}, mean over the "
        f"second half {t['mean_second_half']:.1f}"
    )
    if result.drift is not None:
        d = result.drift
        print(
            f"energy drift: {d['drift_meV_per_atom_per_ps']:.3f} meV/atom/ps; max |E(t) - E(0)| "
            f"{d['max_abs_dE_eV']:.3g} eV ({d['max_abs_dE_meV_per_atom']:.3g} meV/atom)"
        )
        if not potential.conservative:
            print("note: this model's forces come from its direct head, not -dE/dx: NVE drifts.")
    print(f"wrote {result.frames_written} frames to {args.output} and {report_path}")
    if code:
        print(f"eqv2 md: stopped early: {result.ended['message']}", file=sys.stderr)
    return code
