#!/usr/bin/env python
"""Cost of the smooth mode's neighbour rule: every neighbour within the cut-off vs a cap.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/bench_smooth_neighbors.py            # Cu fcc 108 atoms, 5 Å
    .venv/bin/python benchmarks/bench_smooth_neighbors.py --repeats 1 --size 2   # smoke

The smooth mode (``envelope``) refuses a neighbour cap, because a cap drops edges
discontinuously. On a dense structure (fcc copper, ``--size``³ cubic cells, 4 atoms each) this
measures, with the quickstart model's widths, one energy + −dE/dx forces evaluation, capped at
``--max-neighbors`` without envelope and uncapped with the envelope:

* edges and edges per atom (load-independent: the model's work is nearly all per edge);
* CPU time (``time.process_time``, median of ``--repeats``, the two rules interleaved in one
  process, so a loaded machine slows both alike);
* peak memory of one evaluation: the peak resident set (VmHWM, reset before it) above the
  resident set before it, each rule in a fresh child process after a warm-up evaluation,
  median of ``--memory-repeats`` children (Linux).

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
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


def _rules(max_neighbors: int) -> dict[str, dict]:
    return {
        f"cap {max_neighbors}, no envelope": dict(max_neighbors=max_neighbors),
        "no cap, polynomial envelope": dict(
            max_neighbors=None, envelope={"type": "polynomial", "p": 5}
        ),
    }


def _setup(args, keys: dict):
    block = yaml.safe_load((REPO / "src/eqv2/cli/resources/quickstart.yaml").read_text())["model"]
    block.update(max_radius=args.cutoff, direct_forces=False)
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((args.size,) * 3)
    atoms.rattle(0.05, seed=0)
    torch.manual_seed(0)
    pot = Potential(EquiformerV2(EquiformerV2Config(**{**block, **keys}))).eval()
    return atoms, pot, pot.build_graph([atoms])


def _evaluate(pot, graph) -> None:
    with torch.no_grad():  # forces are −dE/dx: the potential enables grad for them itself
        pot(graph)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def _peak_growth_mb(args, rule: str) -> float:
    """In this (child) process: peak RSS of one evaluation above the RSS before it, in MB.

    After a warm-up evaluation (lazily built constants), the peak (VmHWM) is reset to the
    current RSS through ``/proc/self/clear_refs`` (Linux ≥ 4.0) and read after the next one.
    """
    _, pot, graph = _setup(args, _rules(args.max_neighbors)[rule])
    _evaluate(pot, graph)
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kb("VmRSS")
    _evaluate(pot, graph)
    return (_status_kb("VmHWM") - before) / 1024


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=3, help="cubic fcc cells per axis")
    p.add_argument("--cutoff", type=float, default=5.0)
    p.add_argument("--max-neighbors", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(_peak_growth_mb(args, args.memory_child)))
        return 0
    rules = _rules(args.max_neighbors)
    pots, graphs, times = {}, {}, {}
    for name, keys in rules.items():
        atoms, pots[name], graphs[name] = _setup(args, keys)
        times[name] = []
    for _ in range(args.repeats):
        for name in rules:
            start = time.process_time()
            _evaluate(pots[name], graphs[name])
            times[name].append(time.process_time() - start)
    child = [sys.executable, __file__, f"--size={args.size}", f"--cutoff={args.cutoff}",
             f"--max-neighbors={args.max_neighbors}", f"--threads={args.threads}"]  # fmt: skip
    memory: dict[str, list[float]] = {name: [] for name in rules}
    for _ in range(args.memory_repeats):
        for name in rules:
            out = subprocess.run([*child, f"--memory-child={name}"], capture_output=True,
                                 text=True, check=True)  # fmt: skip
            memory[name].append(float(out.stdout.strip().splitlines()[-1]))
    lines = [
        f"Cu fcc, {len(atoms)} atoms, cut-off {args.cutoff:g} Å, quickstart widths, energy + "
        f"−dE/dx forces, CPU s (median of {args.repeats}), {args.threads} thread(s), peak RSS "
        f"above the RSS before one evaluation (median of {args.memory_repeats} child processes)",
        "",
        "| neighbour rule | edges | edges/atom | CPU s | CPU ratio | peak MB | memory ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    base_cpu = base_mb = None
    for name in rules:
        edges = int(graphs[name]["edge_index"].shape[1])
        cpu, mb = statistics.median(times[name]), statistics.median(memory[name])
        base_cpu, base_mb = base_cpu or cpu, base_mb or mb
        lines.append(
            f"| {name} | {edges} | {edges / len(atoms):.1f} | {cpu:.3f} | {cpu / base_cpu:.2f} "
            f"| {mb:.0f} | {mb / base_mb:.2f} |"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
