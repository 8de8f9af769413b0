#!/usr/bin/env python
"""A/B runs of the denoising tasks on the EMT demo data: DeNS vs plain, Noisy Nodes vs plain.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/denoising_ab.py --out runs/denoising_ab
    .venv/bin/python benchmarks/denoising_ab.py --out runs/denoising_ab --only dens \\
        --set train.max_steps=200
    .venv/bin/python benchmarks/denoising_ab.py --out runs/denoising_ab --small --systems 24

1. **Data**: ``--systems`` slab+adsorbate systems from the demo's EMT generator (``eqv2 demo``'s
   settings, seed 0; EMT stands in for DFT), split by system into train/val/test
   (``OUT/data``; reused when present).
2. **DeNS A/B** (one seed): ``configs/dens_emt.yaml`` (DeNS backbone and heads, fairchem's
   MPtrj DeNS recipe) and the same config with ``train.denoising`` null: the same model, the
   same data order, the same number of steps.
3. **Noisy Nodes A/B** (``--seeds``, default 0 1 2): ``configs/dens_noisy_nodes_emt.yaml``
   (plain backbone + ``position_denoising_head``) against the same config without the
   denoising head and without ``train.denoising``; one pair per seed (the seed sets the
   initial weights, the batch order and the noise).

Every run is exactly ``eqv2 train CONFIG --train OUT/data/train.extxyz --val ... --test ...``
with ``--set`` overrides; each run's ``metrics.json`` has the test metrics of its final (EMA)
weights. ``OUT/summary.json`` collects the test energy and force MAEs; the script prints a
table. The machine may be shared: timings are not the point here, the MAEs are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DENS = REPO / "configs" / "dens_emt.yaml"
NOISY_NODES = REPO / "configs" / "dens_noisy_nodes_emt.yaml"
#: ``--small``: a one-block, 16-channel model and 80 steps, for a machine shared with others
SMALL = [
    "model.num_layers=1", "model.sphere_channels=16", "model.attn_hidden_channels=16",
    "model.attn_alpha_channels=8", "model.attn_value_channels=4", "model.num_heads=2",
    "model.ffn_hidden_channels=16", "model.edge_channels=16", "model.lmax_list=[2]",
    "model.mmax_list=[1]", "model.max_neighbors=12", "train.max_steps=80",
    "train.warmup_steps=4", "train.max_atoms_per_batch=120", "train.eval_every=1000",
    "train.checkpoint_every=1000", "train.tensorboard=false", "data.train_eval_structures=0",
]  # fmt: skip
PLAIN_HEADS = (
    "model.heads={energy: {module: equiformer_v2_energy_head}, "
    "forces: {module: equiformer_v2_force_head}}"
)


def make_data(out: Path, systems: int) -> dict[str, Path]:
    """The demo's EMT data (train/val/test extxyz) under ``out``, generated once."""
    paths = {name: out / f"{name}.extxyz" for name in ("train", "val", "test")}
    if all(p.exists() for p in paths.values()):
        return paths
    from eqv2.cli.demo import DEMO_DATA
    from eqv2.data.generate import generate_dataset, write_dataset

    ds = generate_dataset(systems, seed=0, **DEMO_DATA)
    written = write_dataset(ds, out)
    return {name: written[name] for name in paths}


def train(config: Path, overrides: list[str], data: dict[str, Path], out: Path) -> dict[str, Any]:
    """One ``eqv2 train`` run; its test metrics (final EMA weights)."""
    from eqv2.train.run_config import load_run_config
    from eqv2.train.workflow import run_training

    run = load_run_config(config, overrides)
    run.data.train, run.data.val, run.data.test = (str(data[k]) for k in ("train", "val", "test"))
    run.data.num_workers = 0  # one process per run: the machine is shared
    metrics = run_training(run, out, progress=False, overwrite=True)
    test = metrics["test"]
    return {k: test[k] for k in ("energy_mae", "force_mae", "force_cos")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--systems", type=int, default=48, help="EMT systems to generate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Noisy Nodes seeds")
    p.add_argument("--only", choices=("dens", "noisy_nodes"), help="run one of the two A/Bs")
    p.add_argument("--small", action="store_true", help="the SMALL model and schedule")
    p.add_argument("--run", dest="names", action="append",
                   help="only the runs of these names (repeatable), e.g. dens_plain")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="config override for every run, e.g. train.max_steps=200")  # fmt: skip
    args = p.parse_args(argv)
    data = make_data(args.out / "data", args.systems)
    summary_path = args.out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    overrides = (SMALL if args.small else []) + args.overrides
    summary["overrides"] = overrides
    runs: list[tuple[str, Path, list[str]]] = []
    if args.only in (None, "dens"):
        runs += [("dens", DENS, []), ("dens_plain", DENS, ["train.denoising=null"])]
    if args.only in (None, "noisy_nodes"):
        for seed in args.seeds:
            s = [f"train.seed={seed}"]
            plain = [*s, "train.denoising=null", PLAIN_HEADS]
            runs += [
                (f"noisy_nodes_s{seed}", NOISY_NODES, s),
                (f"plain_s{seed}", NOISY_NODES, plain),
            ]
    runs = [r for r in runs if not args.names or r[0] in args.names]
    for name, config, extra in runs:
        result = train(config, [*overrides, *extra], data, args.out / name)
        summary[name] = result
        summary_path.write_text(json.dumps(summary, indent=2))
        print(f"{name:<18} test energy MAE {result['energy_mae']:.4f} eV  "
              f"force MAE {result['force_mae']:.4f} eV/Å", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
