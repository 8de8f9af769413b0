"""AdsorbML on generated systems: success rates for k = 1..5, speed-ups and timings.

EMT stands in for DFT throughout. Without ``--checkpoint`` the script first trains a small
model on EMT-labelled data from eqv2's generator (the demo's metals, facets and adsorbates;
``configs/quickstart.yaml``) so the ML ranking means something; then for each benchmark system
(a slab of one of those metals and facets with one adsorbate) it runs the AdsorbML loop:

- placements: heuristic (every distinct site) plus random, ``--placements`` in all;
- ML: batched relaxations with the model (``eqv2.simulate.relax_structures``);
- reference baseline: every placement relaxed with EMT (ASE LBFGS, OC20 settings): the minimum
  and its cost in EMT calls;
- ML+SP and ML+RX for the top 5 valid ML structures.

It prints per-system tables and the aggregate (success rate, speed-up = baseline calls /
strategy calls, as the AdsorbML paper counts DFT calls) and writes a JSON file with everything
plus a Markdown block for ``docs/benchmarks.md``. Timings are wall seconds on this machine.

    python benchmarks/bench_adsorbml.py                      # trains ~5 min, 6 systems
                                                             # (~15-20 min on 2 quiet cores)
    python benchmarks/bench_adsorbml.py --checkpoint runs/demo/run/final.pt
    python benchmarks/bench_adsorbml.py --tiny               # seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from ase import Atoms
from ase.build import fcc100, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

from eqv2 import tune_allocator
from eqv2.cli.demo import DEMO_DATA, QUICKSTART  # the demo's data and model
from eqv2.data.generate import emt_lattice_constant, generate_dataset, write_dataset
from eqv2.model.loading import load_model
from eqv2.safe_io import atomic_write_path
from eqv2.simulate.adsorbml import aggregate, format_table, model_relaxer, run_adsorbml
from eqv2.simulate.relax import DEFAULT_MAX_ATOMS

REPO = Path(__file__).resolve().parents[1]

#: Benchmark systems: (metal, facet, adsorbate).
SYSTEMS = (
    ("Cu", "111", "*O"),
    ("Pt", "100", "*OH"),
    ("Pd", "111", "*CO"),
    ("Cu", "100", "*N"),
    ("Pt", "111", "*H"),
    ("Pd", "100", "*C"),
)
_BUILDERS = {"111": fcc111, "100": fcc100}


def build_slab(metal: str, facet: str, size: tuple[int, int, int]) -> Atoms:
    """A clean slab at EMT's lattice constant: top layer tagged 1 and free, the rest fixed."""
    slab = _BUILDERS[facet](metal, size, a=emt_lattice_constant(metal), vacuum=7.0)
    free = slab.get_tags() == 1  # ASE numbers the layers from the top
    slab.set_tags(free.astype(int))
    slab.set_constraint(FixAtoms(mask=~free))
    slab.info = {"name": f"{metal}({facet})"}  # ASE's site table is not extxyz-writable
    return slab


#: ``--tiny``: a one-block model so the check takes seconds.
TINY_MODEL = [
    "model.num_layers=1", "model.sphere_channels=8", "model.attn_hidden_channels=8",
    "model.num_heads=2", "model.attn_alpha_channels=4", "model.attn_value_channels=4",
    "model.ffn_hidden_channels=8", "model.edge_channels=8", "model.lmax_list=[2]",
    "model.mmax_list=[1]",
]  # fmt: skip


def train_model(
    work: Path, systems: int, steps: int, seed: int, overrides: list[str] | None = None
) -> Path:
    """Generate EMT data and train the quick-start model; return the checkpoint."""
    from eqv2.train.run_config import load_run_config
    from eqv2.train.workflow import run_training

    t0 = time.perf_counter()
    data = dict(DEMO_DATA, relax_steps=5, rattle_frames=1) if overrides else DEMO_DATA
    ds = generate_dataset(systems, seed=seed, **data)
    files = write_dataset(ds, work / "data", fractions=(0.9, 0.1, 0.0))
    overrides = [f"data.{k}={files[k]}" for k in ("train", "val") if k in files] + (overrides or [])
    overrides.append(f"train.max_steps={steps}")
    if steps < 100:
        overrides += [f"train.eval_every={steps}", f"train.checkpoint_every={steps}"]
        overrides.append(f"train.warmup_steps={max(1, steps // 20)}")
    run = load_run_config(QUICKSTART, overrides)
    metrics = run_training(run, work / "run", progress=False)
    val = metrics.get("val", {})
    print(
        f"trained {steps} steps on {len(ds.s2ef_frames)} frames in "
        f"{time.perf_counter() - t0:.0f} s (val force MAE {val.get('force_mae', float('nan')):.3f}"
        " eV/A)",
        flush=True,
    )
    return work / "run" / "final.pt"


def markdown(summary: dict) -> str:
    """The block for docs/benchmarks.md."""
    s = summary["settings"]
    lines = [
        f"AdsorbML on {s['systems']} generated systems ({', '.join(summary['system_names'])}), "
        f"{s['placements']} placements each, EMT as the reference (stand-in for DFT), "
        f"model `{s['checkpoint']}`; {summary['machine']}.",
        "",
        "| strategy | k | success rate | speed-up (EMT calls) |",
        "|---|---:|---:|---:|",
    ]
    for name, rows in summary["aggregate"].items():
        for row in rows:
            sp = "-" if row["speedup"] is None else f"{row['speedup']:.1f}x"
            lines.append(f"| {name.upper()} | {row['k']} | {row['success_rate']:.0%} | {sp} |")
    t = summary["timings_s"]
    lines += [
        "",
        f"Timings: ML relaxations {t['ml_relax']:.1f} s for {t['ml_structures']} structures "
        f"({t['ml_relax'] / max(t['ml_structures'], 1) * 1000:.0f} ms each, batched); EMT "
        f"baseline relaxations {t['reference_baseline']:.1f} s; total {t['total']:.1f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, help="use this model instead of training one")
    p.add_argument("--train-systems", type=int, default=40)
    p.add_argument("--train-steps", type=int, default=500)
    p.add_argument("--systems", type=int, default=len(SYSTEMS), help="first N benchmark systems")
    p.add_argument("--size", type=int, nargs=3, default=(3, 3, 3), help="slab repetitions")
    p.add_argument("--placements", type=int, default=30)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--ml-steps", type=int, default=200)
    p.add_argument("--reference-steps", type=int, default=200)
    p.add_argument("--max-atoms", type=int, default=DEFAULT_MAX_ATOMS, help="batch atom budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "bench_adsorbml")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "adsorbml.json")
    p.add_argument("--tiny", action="store_true", help="seconds-long run that checks the script")
    args = p.parse_args(argv)
    tune_allocator()  # as eqv2's CLI does: freed memory is reused (eqv2.allocator)
    if args.tiny:
        args.train_systems, args.train_steps, args.systems = 2, 2, 1
        args.size, args.placements, args.ml_steps, args.reference_steps = (2, 2, 3), 3, 3, 5

    t_start = time.perf_counter()
    checkpoint = args.checkpoint or train_model(
        args.work, args.train_systems, args.train_steps, args.seed,
        TINY_MODEL if args.tiny else None,
    )  # fmt: skip
    potential = load_model(checkpoint)
    relax = model_relaxer(potential, fmax=0.05, steps=args.ml_steps, max_atoms=args.max_atoms)

    per_system, names = [], []
    rows_by_strategy: dict[str, list] = {"ml+sp": [], "ml+rx": []}
    baseline_calls: list[int | None] = []
    totals = {"ml_relax": 0.0, "reference_baseline": 0.0, "reference_sp": 0.0, "placements": 0.0}
    n_ml = 0
    for metal, facet, adsorbate in SYSTEMS[: args.systems]:
        slab = build_slab(metal, facet, tuple(args.size))
        result = run_adsorbml(
            slab, adsorbate, relax, EMT(), n_placements=args.placements, seed=args.seed,
            top_k=args.top_k, strategies=("ml+sp", "ml+rx"),
            reference_steps=args.reference_steps,
        )  # fmt: skip
        name = f"{metal}({facet})+{adsorbate}"
        names.append(name)
        print(f"\n== {name}\n{result.table()}", flush=True)
        for key in rows_by_strategy:
            rows_by_strategy[key].append(result.strategies[key])
        baseline_calls.append(result.baseline.calls)
        for key in totals:
            totals[key] += result.timings.get(key, 0.0)
        n_ml += len(result.candidates) + 1  # + the clean slab
        per_system.append({"name": name, **result.to_dict()})

    agg = {k: aggregate(v, baseline_calls) for k, v in rows_by_strategy.items()}
    for name, rows in agg.items():
        print(f"\n{format_table(rows, title=f'{name.upper()} over {len(names)} systems')}")
    totals.update(ml_structures=n_ml, total=time.perf_counter() - t_start)
    summary = {
        "settings": {
            "checkpoint": str(checkpoint),
            "systems": len(names),
            "placements": args.placements,
            "top_k": args.top_k,
            "ml_steps": args.ml_steps,
            "reference_steps": args.reference_steps,
            "size": list(args.size),
            "seed": args.seed,
            "train_systems": None if args.checkpoint else args.train_systems,
            "train_steps": None if args.checkpoint else args.train_steps,
        },
        "machine": f"{platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads",
        "system_names": names,
        "aggregate": agg,
        "timings_s": totals,
        "systems": per_system,
    }
    summary["markdown"] = markdown(summary)
    print("\n" + summary["markdown"])
    with atomic_write_path(args.out) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
