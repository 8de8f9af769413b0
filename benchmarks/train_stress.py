#!/usr/bin/env python
"""Stress training end to end: fine-tune an OMat24-style model on stress-labelled bulk crystals.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/train_stress.py --out runs/bulk_stress
    .venv/bin/python benchmarks/train_stress.py --out runs/bulk_stress --set train.max_steps=300

1. **Split**: the structures of ``--data`` files (default: ``../shared/data/bulk_stress``, mlearn
   Cu and Si with DFT energy, forces and stress) are split per file with a seeded permutation,
   ``--val-fraction`` (20 %) of each into ``OUT/split/val.extxyz`` and the rest into
   ``OUT/split/train.extxyz`` (``--stride N`` keeps every N-th structure of each file first).
2. **Train**: ``--config`` (default ``configs/materials/finetune_omat_bulk_stress.yaml``: the
   OMat24 loss recipe, starting from ``omat_stress_small.pt``) in ``OUT/run``, exactly what

       eqv2 train CONFIG --train OUT/split/train.extxyz --val OUT/split/val.extxyz --out OUT/run

   runs. ``OUT/run/metrics.json`` then holds the model's validation metrics and the
   predict-the-mean baseline's (``val_baseline``: every structure gets the training set's mean
   energy and mean stress tensor, and zero forces).
3. **Report**: the starting model (before any step, with the run's fitted normalisers) and the
   trained one against the baseline on the validation split, stress in eV/Å³ and GPa;
   ``OUT/summary.json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import ase.io
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "bulk_stress"
CONFIG = REPO / "configs" / "materials" / "finetune_omat_bulk_stress.yaml"
KEYS = ("stress_mae", "stress_mae_gpa", "stress_isotropic_mae", "stress_anisotropic_mae",
        "energy_mae", "force_mae")  # fmt: skip


def split(
    files: list[Path], out: Path, val_fraction: float, seed: int, stride: int = 1
) -> tuple[Path, Path]:
    """Write a seeded per-file train/val split of ``files`` (every ``stride``-th structure)
    into ``out``; return the paths."""
    train, val = [], []
    for k, path in enumerate(files):
        frames = ase.io.read(path, f"::{stride}")
        order = np.random.default_rng([seed, k]).permutation(len(frames))
        n_val = max(1, round(val_fraction * len(frames)))
        val += [frames[i] for i in sorted(order[:n_val])]
        train += [frames[i] for i in sorted(order[n_val:])]
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.extxyz", out / "val.extxyz"
    for frames, path in zip((train, val), paths, strict=True):
        ase.io.write(path, frames, format="extxyz")
    return paths


def starting_metrics(run: Any, train: Path, val: Path, out: Path) -> dict[str, float]:
    """Validation metrics of the fine-tune's starting model (its normalisers as the run fits
    them), before any training step."""
    from eqv2.train.evaluation import score_split
    from eqv2.train.finetune import start_finetune
    from eqv2.train.target_fit import stream_statistics
    from eqv2.train.workflow import read_labelled

    stats = stream_statistics(read_labelled(train, run.data, "train"))
    potential, _ = start_finetune(run, stats, out)
    result = score_split(
        potential, read_labelled(val, run.data, "val"), name="val",
        train_mean_energy=stats.energy / stats.n, train_mean_stress=stats.mean_stress(),
    )  # fmt: skip
    return result.metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--data", type=Path, nargs="+", help="extxyz files with stress (bulk_stress)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stride", type=int, default=1, help="use every N-th structure of each file")
    args = p.parse_args(argv)

    from eqv2.train.metrics import format_metrics
    from eqv2.train.run_config import load_run_config
    from eqv2.train.workflow import run_training

    files = args.data or sorted(DATA.glob("*.extxyz"))
    train, val = split(files, args.out / "split", args.val_fraction, args.seed, args.stride)
    overrides = [*args.set, f"data.train={train}", f"data.val={val}"]
    run = load_run_config(args.config, overrides)
    print(f"eqv2 train {args.config} --train {train} --val {val} --out {args.out / 'run'}"
          + "".join(f" --set {s}" for s in args.set))  # fmt: skip
    before = starting_metrics(run, train, val, args.out / "run")
    metrics = run_training(run, args.out / "run", overwrite=True, progress=False)
    table = {"start": before, "trained": metrics["val"], "mean baseline": metrics["val_baseline"]}
    print(format_metrics(table))
    summary = {name: {k: m.get(k) for k in KEYS} for name, m in table.items()}
    summary["command"] = sys.argv
    summary["n_train"] = len(ase.io.read(train, ":"))
    summary["n_val"] = before["n_structures"]
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    ratio = metrics["val"]["stress_mae"] / metrics["val_baseline"]["stress_mae"]
    print(f"validation stress MAE / mean baseline: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
