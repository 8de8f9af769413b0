"""``eqv2 md --indices SEL --engine torchsim``: many structures of INPUT as one torch-sim batch.

Every selected structure runs the same MD (`eqv2.simulate.torchsim.run_md_batch`), packed into
bins by torch-sim's autobatcher, and gets its own trajectory: OUTPUT's name with the structure's
index before the suffix (``traj.extxyz`` → ``traj.7.extxyz``), streamed and replaced atomically
like a single run's. Structure ``i`` starts from the velocities ``--index i --seed SEED+i``
draws, so its NVE run equals that single run. One JSON report (``--report``, default OUTPUT
with ``.json``) lists every structure's summary and says how the batch ended.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["parse_indices", "run_batch", "trajectory_path"]


def parse_indices(spec: str, count: int, *, flag: str = "--indices") -> list[int]:
    """Structure indices chosen by ``spec`` among ``count``, in the order given.

    ``spec`` is a comma-separated list of integers (negative count from the end) and
    Python-style slices ``start:stop[:step]`` (``:`` is every structure), e.g. ``0:8,12,-1``.

    Raises:
        ValueError: a malformed part, an index out of range, a structure chosen twice, or an
            empty selection; naming ``flag``, the value and the fix.
    """
    chosen: list[int] = []
    for part in spec.split(","):
        text = part.strip()
        try:
            if ":" in text:
                bounds = [int(x) if x.strip() else None for x in text.split(":")]
                if len(bounds) > 3:
                    raise ValueError
                chosen.extend(range(count)[slice(*bounds)])
            else:
                i = int(text)
                if not -count <= i < count:
                    raise IndexError(i)
                chosen.append(i % count)
        except IndexError:
            raise ValueError(
                f"{flag} {spec}: index {text} is out of range; INPUT holds {count} structures "
                f"(0...{count - 1})."
            ) from None
        except ValueError:
            raise ValueError(
                f"{flag} {spec}: cannot read {text!r}; give integers and slices separated by "
                "commas, e.g. ':' (all), '0:8', '0,3,5', '0:8,12,-1'."
            ) from None
    twice = sorted({i for i in chosen if chosen.count(i) > 1})
    if twice:
        raise ValueError(
            f"{flag} {spec}: chooses structure(s) {twice} more than once; each structure runs "
            "once and writes one trajectory."
        )
    if not chosen:
        raise ValueError(f"{flag} {spec}: selects no structure of the {count} in INPUT.")
    return chosen


def trajectory_path(output: str | os.PathLike, index: int) -> Path:
    """Structure ``index``'s trajectory: ``output`` with ``.index`` before its suffix."""
    out = Path(output)
    return out.with_name(f"{out.stem}.{index}{out.suffix}")


def run_batch(args: argparse.Namespace, received: list[str], options: dict[str, Any]) -> int:
    """Run ``args.indices`` of ``args.input`` through torch-sim; return the exit status.

    ``received`` names the signal that stopped the run (filled by the caller's handler, which
    raises ``KeyboardInterrupt``); Ctrl-C is assumed when it stays empty. ``options``: the MD
    keyword arguments of `eqv2.simulate.md.run_md` (ensemble, time step, steps, ..., seed).
    """
    from eqv2.cli.io import check_output, read_atoms
    from eqv2.cli.model_args import load_potential
    from eqv2.safe_io import write_json
    from eqv2.simulate.md import MDInterrupted

    if args.engine != "torchsim":
        raise ValueError(
            "--indices runs several structures as one torch-sim batch: add --engine torchsim "
            "(the ASE engine runs one structure, chosen with --index)."
        )
    images = read_atoms(args.input)
    indices = parse_indices(args.indices, len(images))
    paths = [check_output(trajectory_path(args.output, i), [args.input]) for i in indices]
    report_path = check_output(args.report or Path(args.output).with_suffix(".json"),
                               [args.input], flag="--report")  # fmt: skip
    try:
        from eqv2.simulate.torchsim import EqV2TorchSimModel, run_md_batch
    except ImportError as exc:
        raise ValueError(f"--engine torchsim: {exc}") from None
    potential = load_potential(args)
    code = 0
    try:
        results = run_md_batch(
            [images[i] for i in indices],
            EqV2TorchSimModel(potential),
            pressure_GPa=args.pressure_GPa,
            seeds=[args.seed + i for i in indices],
            trajectories=paths,
            **options,
        )
    except MDInterrupted as exc:
        results = exc.result
        code = 128 + int(getattr(signal, received[0] if received else "SIGINT"))
    rows = []
    for i, path, result in zip(indices, paths, results, strict=True):
        if result is None:
            rows.append({"index": i, "trajectory": None, "ended": {"reason": "not started"}})
            continue
        rows.append({"index": i, "trajectory": str(path), **result.summary()})
        if result.ended["reason"] == "diverged":
            code = code or 1
    reasons = [row["ended"]["reason"] for row in rows]
    ended: dict[str, Any] = {r: reasons.count(r) for r in dict.fromkeys(reasons)}
    if code > 1:
        ended["signal"] = received[0] if received else "SIGINT"
    report = {
        "settings": {
            "engine": "torchsim",
            "checkpoint": str(args.checkpoint),
            "input": str(args.input),
            "indices": indices,
            "ensemble": args.ensemble,
            "timestep_fs": args.timestep_fs,
            "steps": args.steps,
            "seed": args.seed,
            "float64": args.dtype == "float64",
            "model_conservative": potential.conservative,
        },
        "ended": ended,
        "structures": rows,
    }
    write_json(report, report_path)
    _print_summary(args, rows, potential.conservative)
    frames = sum(row.get("frames_written", 0) for row in rows)
    print(f"wrote {frames} frames to {sum(r is not None for r in results)} trajectories "
          f"({trajectory_path(args.output, indices[0])}, ...) and {report_path}")  # fmt: skip
    if code:
        summary = ", ".join(f"{n} {reason}" for reason, n in ended.items() if reason != "signal")
        print(f"eqv2 md: stopped early: {summary}", file=sys.stderr)
    return code


def _print_summary(args: argparse.Namespace, rows: list[dict], conservative: bool) -> None:
    print(f"{args.ensemble} MD of {len(rows)} structures through torch-sim: {args.steps} steps "
          f"of {args.timestep_fs:g} fs")  # fmt: skip
    for row in rows:
        if "settings" not in row:
            print(f"  [{row['index']}] not started")
            continue
        t, drift = row["temperature_K"], row["drift"]
        line = (
            f"  [{row['index']}] {row['settings']['formula']}: T mean over the second half "
            f"{t['mean_second_half']:.1f} K"
        )
        if drift is not None:
            line += f", drift {drift['drift_meV_per_atom_per_ps']:.3f} meV/atom/ps"
        if row["ended"]["reason"] != "completed":
            line += f" ({row['ended']['message']})"
        print(line)
    if args.ensemble == "nve" and not conservative:
        print("note: this model's forces come from its direct head, not -dE/dx: NVE drifts.")
