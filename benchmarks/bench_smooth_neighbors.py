#!/usr/bin/env python
"""Cost of the smooth mode's neighbour rule: every neighbour within the cut-off vs a cap.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/bench_smooth_neighbors.py            # Cu fcc 108 atoms, 5 Å
    .venv/bin/python benchmarks/bench_smooth_neighbors.py --repeats 1 --size 2   # smoke

The smooth mode (``envelope``) refuses a neighbour cap, because a cap drops edges
discontinuously. On a dense structure (fcc copper, ``--size``³ cubic cells, 4 atoms each) this
measures, with the quickstart model's widths, the number of edges and the CPU time
(``time.process_time``, median of ``--repeats``, capped and uncapped runs interleaved in one
process) of one energy + −dE/dx forces evaluation: capped at ``--max-neighbors`` without
envelope, and uncapped with the envelope. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml
from ase.build import bulk

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from eqv2.model import EquiformerV2, EquiformerV2Config, Potential  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=3, help="cubic fcc cells per axis")
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--max-neighbors", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    block = yaml.safe_load((REPO / "src/eqv2/cli/resources/quickstart.yaml").read_text())["model"]
    block.update(max_radius=args.cutoff, direct_forces=False)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((args.size,) * 3)
    atoms.rattle(0.05, seed=0)
    rules = {
        f"cap {args.max_neighbors}, no envelope": dict(max_neighbors=args.max_neighbors),
        "no cap, polynomial envelope": dict(
            max_neighbors=None, envelope={"type": "polynomial", "p": 5}
        ),
    }
    pots, graphs, times = {}, {}, {}
    for name, keys in rules.items():
        torch.manual_seed(0)
        pots[name] = Potential(EquiformerV2(EquiformerV2Config(**{**block, **keys}))).eval()
        graphs[name] = pots[name].build_graph([atoms])
        times[name] = []
    for _ in range(args.repeats):
        for name in rules:
            start = time.process_time()
            with torch.no_grad():
                pots[name](graphs[name])
            times[name].append(time.process_time() - start)
    lines = [
        f"Cu fcc, {len(atoms)} atoms, cut-off {args.cutoff:g} Å, quickstart widths, energy + "
        f"−dE/dx forces, CPU s (median of {args.repeats}), {args.threads} thread(s)",
        "",
        "| neighbour rule | edges | edges/atom | CPU s | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    base = None
    for name in rules:
        edges = int(graphs[name]["edge_index"].shape[1])
        cpu = statistics.median(times[name])
        base = base or cpu
        lines.append(
            f"| {name} | {edges} | {edges / len(atoms):.1f} | {cpu:.3f} | {cpu / base:.2f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
