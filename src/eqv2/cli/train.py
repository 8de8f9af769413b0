"""``eqv2 train`` and ``eqv2 evaluate``.

``torchrun --nproc_per_node N -m eqv2 train ...`` (or torchrun running the ``eqv2`` script)
trains data-parallel on N processes; rank 0 prints and writes the outputs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train EquiformerV2 on labelled structures (S2EF)")
    p.add_argument("config", type=Path, help="run config YAML (see configs/)")
    p.add_argument("--train", help="training structures (extxyz, ASE db, OC20 LMDB, eqv2 store)")
    p.add_argument("--val", help="validation structures")
    p.add_argument("--test", help="test structures (evaluated at the end)")
    p.add_argument("--out", type=Path, default=Path("runs/eqv2"), help="output directory")
    p.add_argument("--max-steps", type=int, help="override train.max_steps")
    p.add_argument("--max-time", metavar="DURATION",
                   help="time budget (train.max_time): seconds or e.g. 30m, 1.5h; with a step "
                   "budget too, whichever ends first ends the run and the LR schedule")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config value, e.g. --set train.lr=1e-3")  # fmt: skip
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT exactly (weights, optimiser, schedule, data order)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the run already in OUT and start a new one (without it, an existing run "
        "is refused)",
    )
    p.add_argument("--init", "--init-from", dest="init", metavar="CHECKPOINT",
                   help="fine-tune: start a new run from the weights of an eqv2 or fairchem "
                   "checkpoint (sets finetune.init_from)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = sub.add_parser("evaluate", help="S2EF metrics of a checkpoint on labelled structures")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("data", help="labelled structures")
    e.add_argument("--out", type=Path, help="write metrics and baselines (JSON) here")
    e.add_argument(
        "--predictions",
        type=Path,
        metavar="FILE.extxyz",
        help="write every structure with its reference labels (energy, forces, "
        "stress) and the predictions (eqv2_energy, eqv2_forces, eqv2_stress)",
    )
    e.add_argument("--parity", type=Path, metavar="FILE.png",
                   help="write energy and force parity plots")  # fmt: skip
    e.add_argument("--energy-key", default="energy")
    e.add_argument("--forces-key", default="forces")
    e.add_argument(
        "--stress-key",
        default="stress",
        help="where stress labels live (eV/Å³, ASE's sign); a model with a stress "
        "head is scored on them (stress MAE in GPa, isotropic/anisotropic MAE)",
    )
    e.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from eqv2.train.metrics import format_metrics
    from eqv2.train.run_config import load_run_config

    overrides = list(args.set)
    for key in ("train", "val", "test"):
        if getattr(args, key):
            overrides.append(f"data.{key}={getattr(args, key)}")
    if args.max_steps is not None:  # a step count given here wins over an epoch schedule
        overrides += [f"train.max_steps={args.max_steps}", "train.max_epochs=null"]
    if args.max_time is not None:
        overrides.append(f"train.max_time={args.max_time}")
    run = load_run_config(args.config, overrides)
    from eqv2.train.workflow import run_training

    metrics = run_training(
        run,
        args.out,
        resume=args.resume,
        init_from=args.init,
        progress=not args.no_progress,
        overwrite=args.overwrite,
    )
    from eqv2.train.distributed import DistributedEnv

    if not DistributedEnv.from_environ().is_main:  # rank 0 of the torchrun job reports
        _leave_without_teardown()
    baselines = ("_baseline", "_element_refs")  # in metrics.json; the demo prints them
    print(format_metrics({k: v for k, v in metrics.items() if not k.endswith(baselines)}))
    print(f"\nwrote {args.out}/final.pt, metrics.json, learning_curves.png, parity plots")
    return 0


def _leave_without_teardown() -> None:
    """End a non-main torchrun process after its successful share of the run.

    The interpreter's teardown after a gloo process group sometimes aborts ("terminate called
    without an active exception", exit -6; about one run in ten of a two-process CPU run):
    everything is written and flushed by then, so the process skips the teardown (see
    docs/training.md, "Exit of non-main processes").
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_evaluate(args: argparse.Namespace) -> int:
    from eqv2.train.metrics import format_metrics
    from eqv2.train.run_config import DataConfig
    from eqv2.train.workflow import evaluate_checkpoint_on, write_json

    data = DataConfig(
        energy_key=args.energy_key, forces_key=args.forces_key, stress_key=args.stress_key
    )
    from eqv2.cli.io import check_output

    for flag, path in (("--predictions", args.predictions), ("--parity", args.parity)):
        if path is not None:  # refused before the model runs
            check_output(path, [args.data], flag=flag)
    report = evaluate_checkpoint_on(
        args.checkpoint, args.data, data, predictions=args.predictions, parity=args.parity
    )
    metrics = report["metrics"]
    bad = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:  # never a success with non-finite numbers; predict names the structures
        raise ValueError(
            f"the model returned non-finite energies or forces on {args.data} (metrics "
            f"{', '.join(bad)} are not finite). Find the structures with: eqv2 predict "
            f"{args.checkpoint} {args.data} -o predictions.extxyz"
        )
    rows = {Path(args.data).name: metrics, "mean energy": report["baseline"]}
    if report["element_refs"] is not None:
        rows["element refs"] = report["element_refs"]
    print(format_metrics(rows))
    print(f"(baselines predict zero forces; 'mean energy' is the {report['baseline_statistics']}'s "
          "mean energy, 'element refs' the sum of the model's element references)")  # fmt: skip
    for flag, path in (("predictions", args.predictions), ("parity plots", args.parity)):
        if path is not None:
            print(f"wrote {flag} to {path}")
    if args.out:
        write_json({**metrics, **{k: v for k, v in report.items() if k != "metrics"}}, args.out)
    return 0
