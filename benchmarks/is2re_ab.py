"""IS2RE direct: an A/B of training variants (e.g. with and without the IS2RS auxiliary task).

EMT stands in for DFT. The script generates OC20-like adsorbate+slab systems with eqv2's EMT
generator, relaxes them (BFGS), and writes IS2RE records: the initial structure with the relaxed
energy (``info["energy_relaxed"]``) and the relaxed positions (``arrays["pos_relaxed"]``), split
80/10/10 by system. Then every variant trains once per seed with the same number of steps, and
the test-split relaxed-energy MAE of each run is reported with its mean ± sample standard
deviation over seeds and the per-seed paired difference to the first variant.

A variant is a name, a run config and ``--set``-style overrides for it alone:

    python benchmarks/is2re_ab.py \\
        --variant direct configs/is2re_direct.yaml data.target=energy_relaxed \\
        --variant aux configs/is2re_direct.yaml \\
        --seeds 0 1 2 --steps 300 --out runs/is2re_ab

Without ``--variant`` the three arms of the EquiformerV2 paper's Appendix D.5 run
(`PAPER_ARMS`): IS2RE direct alone, with the IS2RS auxiliary task, and with the auxiliary task
and Noisy Nodes as Equiformer's code applies it (``train.denoising`` of kind
``relaxed_interpolation``, `NOISY_NODES`).

``--set`` overrides apply to every variant (e.g. a smaller model). Timings are CPU seconds of
this process (``time.process_time``), which a loaded machine affects less than wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ase.io import write

from eqv2.data.generate import generate_dataset
from eqv2.train.run_config import load_run_config
from eqv2.train.workflow import run_training

TARGET = "energy_relaxed_mae"
AUX = "relaxed_displacement_mae"
CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "is2re_direct.yaml")
#: Equiformer's IS2RE Noisy Nodes (configs/is2re_direct.yaml's header cites the source)
NOISY_NODES = (
    "train.denoising={kind: relaxed_interpolation, prob: 1.0, std: 0.3, structure_prob: 0.5}"
)
#: name, config, overrides: IS2RE direct; + IS2RS auxiliary; + IS2RS + Noisy Nodes
PAPER_ARMS = [
    ["direct", CONFIG, "data.target=energy_relaxed"],
    ["aux", CONFIG],
    ["aux_noisy_nodes", CONFIG, NOISY_NODES],
]


def write_is2re(out: Path, systems: int, seed: int, relax_steps: int) -> dict[str, Path]:
    """Generate ``systems`` EMT systems and write ``is2re_initial_<split>.extxyz``; files
    already in ``out`` are reused (the generation is the slow part of a rerun)."""
    splits = ("train", "val", "test")
    existing = {split: out / f"is2re_initial_{split}.extxyz" for split in splits}
    if all(path.exists() for path in existing.values()):
        return existing
    ds = generate_dataset(systems, seed=seed, relax_steps=relax_steps, rattle_frames=0)
    by_id = {s.system_id: s for s in ds.systems}
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, ids in ds.split_ids((0.8, 0.1, 0.1)).items():
        paths[split] = out / f"is2re_initial_{split}.extxyz"
        write(paths[split], [by_id[i].initial for i in ids], format="extxyz")
    return paths


def _spread(values: list[float]) -> dict[str, float]:
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values)}


def run_ab(args: argparse.Namespace) -> dict[str, Any]:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = list(os.getloadavg())
    out = Path(args.out)
    data = write_is2re(out / "data", args.systems, args.data_seed, args.relax_steps)
    common = [
        f"data.train={data['train']}", f"data.val={data['val']}", f"data.test={data['test']}",
        "data.num_workers=0", "data.train_eval_structures=0", "train.tensorboard=false",
        f"train.max_steps={args.steps}", "train.max_epochs=null", "train.warmup_epochs=null",
        f"train.warmup_steps={max(1, args.steps // 20)}", f"train.eval_every={args.steps}",
        f"train.checkpoint_every={args.steps}", *args.set,
    ]  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, config, *own in args.variant:
        runs[name] = []
        for seed in args.seeds:
            run = load_run_config(config, [*common, *own, f"train.seed={seed}"])
            start = time.process_time()
            metrics = run_training(run, out / f"{name}_seed{seed}", progress=False, overwrite=True)
            row = {
                "seed": seed,
                "test": metrics["test"],
                "test_baseline": metrics["test_baseline"],
                "cpu_s": time.process_time() - start,
                "loadavg_1min_after": os.getloadavg()[0],
            }
            runs[name].append(row)
            print(f"{name} seed {seed}: test {TARGET} {row['test'][TARGET]:.4f} eV "
                  f"(mean baseline {row['test_baseline'][TARGET]:.4f}), "
                  f"{row['cpu_s']:.0f} CPU s", flush=True)  # fmt: skip
    names = list(runs)
    summary: dict[str, Any] = {
        name: _spread([r["test"][TARGET] for r in rows]) for name, rows in runs.items()
    }
    for name, rows in runs.items():
        if all(AUX in r["test"] for r in rows):
            summary[f"{name}_{AUX}"] = _spread([r["test"][AUX] for r in rows])
    for name in names[1:]:
        diffs = [b["test"][TARGET] - a["test"][TARGET]
                 for a, b in zip(runs[names[0]], runs[name], strict=True)]  # fmt: skip
        summary[f"{name}_minus_{names[0]}"] = _spread(diffs)
    return {
        "date_utc": started,
        "loadavg_at_start": load,
        "args": {k: v for k, v in vars(args).items()},
        "data": {k: str(v) for k, v in data.items()},
        "runs": runs,
        "summary": summary,
    }


def markdown(result: dict[str, Any]) -> str:
    """A table of the test MAE per variant and seed, and the summary rows."""
    runs = result["runs"]
    seeds = [r["seed"] for r in next(iter(runs.values()))]
    lines = ["| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
             "|---" * (len(seeds) + 2) + "|"]  # fmt: skip
    for name, rows in runs.items():
        s = result["summary"][name]
        cells = " | ".join(f"{r['test'][TARGET]:.4f}" for r in rows)
        lines.append(f"| {name} | {cells} | {s['mean']:.4f} ± {s['std']:.4f} |")
    blanks = " |" * len(seeds)
    for key, s in result["summary"].items():
        if "_minus_" in key:
            lines.append(f"| {key} (paired) |{blanks} {s['mean']:+.4f} ± {s['std']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", nargs="+", action="append",
                        metavar="NAME CONFIG [SET ...]",
                        help="a variant (repeat); default: the three PAPER_ARMS")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--systems", type=int, default=200)
    parser.add_argument("--relax-steps", type=int, default=30)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="override for all variants")
    parser.add_argument("--out", default="runs/is2re_ab")
    args = parser.parse_args()
    args.variant = args.variant or [list(arm) for arm in PAPER_ARMS]
    for variant in args.variant:
        if len(variant) < 2:
            parser.error(f"--variant {variant}: give a name and a config path.")
    result = run_ab(args)
    path = Path(args.out) / "is2re_ab.json"
    path.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
