#!/usr/bin/env python
"""Large structures: peak memory and time per atom of one big Cu slab with adsorbates.

Usage (from the repository root; each case runs in its own subprocess, so its peak RSS is its
own; `nice` it on a shared machine):

    python benchmarks/bench_large.py --config small --atoms 100 1000 10000
    python benchmarks/bench_large.py --config paper31m --atoms 10000 --stress
    python benchmarks/bench_large.py --config small --atoms 100000
    python benchmarks/bench_large.py --config paper31m --atoms 1000 --stress --chunking off auto

A structure of about N atoms is a periodic Cu(111) slab (4 layers, 8 Å vacuum on each side)
with CO on every fourth top-layer atom (`cu_slab_with_adsorbates`). The model has the
architecture of the config's ``model`` section with random weights (seed 0), float32, eval
mode, and runs through `eqv2.model.Potential.compute` (after one warm-up call on a 20-atom
slab) as `Potential.predict` does: energy and forces (direct head, or −dE/dx), with
``--stress`` also the stress (the strain derivative of the energy for models without a stress
head). ``--chunking`` picks the edge chunking policy (`eqv2.nn.chunking`): ``auto`` (the
default budget), ``off``, or a budget in MB.

Reported per case: atoms, edges and edges per atom, graph-construction time, the model's
wall and CPU time per atom (`time.process_time`, all threads; the median of at least
``--min-calls`` repeated calls lasting at least ``--min-time`` s), eqv2's FLOP per atom
(`torch.utils.flop_counter`, counted on one untimed call), the achieved GFLOP/s and its
fraction of a GEMM peak measured in the same process just before and after the timed calls
(`bench_model.gemm_peak`; per wall and per CPU second), peak RSS (``ru_maxrss``, including the
~0.3 GB of the interpreter and torch) and RSS before the model call. Sizes run in increasing
order; a case whose peak RSS, extrapolated from the previous one, would exceed
``--max-rss-mb`` is skipped with a message. On a loaded machine wall times measure the load;
CPU time and the fraction of the peak per CPU second (measured beside the case) are the
comparable ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_model as bm  # noqa: E402  (configs and the shared benchmark machinery)

SLAB_LAYERS = 4
ADSORBATE_EVERY = 4  # one CO on every fourth top-layer atom


def cu_slab_with_adsorbates(num_atoms: int):
    """A periodic Cu(111) slab with CO adsorbates of about ``num_atoms`` atoms (ASE ``Atoms``).

    The slab is n × n × 4 (n chosen so the total is nearest ``num_atoms``), 8 Å of vacuum on each
    side, fully periodic as OC20 structures; C sits 1.85 Å above a top-layer Cu, O 1.15 Å above C.
    """
    import numpy as np
    from ase import Atoms
    from ase.build import fcc111

    per_column = SLAB_LAYERS + 2.0 / ADSORBATE_EVERY
    n = max(2, round((num_atoms / per_column) ** 0.5))
    slab = fcc111("Cu", size=(n, n, SLAB_LAYERS), vacuum=8.0, periodic=True)
    z = slab.positions[:, 2]
    top = np.flatnonzero(np.isclose(z, z.max()))[::ADSORBATE_EVERY]
    carbon = slab.positions[top] + [0.0, 0.0, 1.85]
    oxygen = carbon + [0.0, 0.0, 1.15]
    ads = Atoms("CO" * len(top), positions=np.stack((carbon, oxygen), axis=1).reshape(-1, 3))
    slab += ads
    slab.rattle(0.02, seed=0)
    return slab


def _chunking(spec: str):
    from eqv2.nn.chunking import EdgeChunking

    if spec == "auto":
        return EdgeChunking()
    if spec == "off":
        return EdgeChunking.off()
    return EdgeChunking(budget_bytes=int(float(spec) * 2**20))


def run_case(
    config: str,
    atoms: int,
    stress: bool,
    chunking: str,
    threads: int,
    min_time: float = 2.0,
    gemm_size: int = bm.GEMM_PEAK_SIZE,
    min_calls: int = 3,
) -> dict:
    """One measurement in this process (called in a fresh subprocess by `main`).

    Calls on the structure: one counted by the FLOP counter (untimed; it also warms up the
    sizes of this structure), then timed calls until ``min_time`` seconds have passed and at
    least ``min_calls`` were made (the median is reported), with a GEMM peak measured just
    before and after them.
    """
    import torch

    from eqv2.model import EquiformerV2, EquiformerV2Config, Potential

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = EquiformerV2(EquiformerV2Config.from_dict(bm.CONFIGS[config])).eval()
    model.edge_chunking = _chunking(chunking)
    pot = Potential(model).eval()
    structure = cu_slab_with_adsorbates(atoms)
    # warm-up on a small slab: one-off costs (sphere-grid caches, lazy init) are not per atom
    pot.compute(pot.build_graph([cu_slab_with_adsorbates(20)]), stress=stress)

    wall, cpu = time.perf_counter(), time.process_time()
    graph = pot.build_graph([structure])
    graph_wall, graph_cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_before = bm._rss_mb()
    flop = bm.count_flops(lambda: pot.compute(graph, stress=stress))
    peak_before = bm.gemm_peak(size=gemm_size)
    walls, cpus = [], []
    started = time.perf_counter()
    while len(walls) < max(1, min_calls) or time.perf_counter() - started < min_time:
        wall, cpu = time.perf_counter(), time.process_time()
        out = pot.compute(graph, stress=stress)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    peak_after = bm.gemm_peak(size=gemm_size)
    model_wall, model_cpu = statistics.median(walls), statistics.median(cpus)
    num_atoms, num_edges = len(structure), int(graph["edge_index"].shape[1])
    return {
        "config": config,
        "atoms": num_atoms,
        "edges": num_edges,
        "edges_per_atom": num_edges / num_atoms,
        "stress": stress,
        "chunking": chunking,
        "outputs": sorted(out),
        "finite": all(bool(abs(v).max() < float("inf")) for v in out.values()),
        "threads": threads,
        "calls": len(walls),
        "graph_wall_s": graph_wall,
        "graph_cpu_s": graph_cpu,
        "model_wall_s": model_wall,
        "model_cpu_s": model_cpu,
        "ms_per_atom": 1e3 * model_wall / num_atoms,
        "cpu_ms_per_atom": 1e3 * model_cpu / num_atoms,
        "mflop_per_atom": flop / 1e6 / num_atoms,
        **bm.roofline(flop, 1e3 * model_wall, 1e3 * model_cpu, peak_before, peak_after),
        "rss_before_model_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loadavg": bm._loadavg(),
    }


def predicted_peak_mb(previous: dict[str, Any], atoms: int) -> float:
    """Peak RSS of a case of ``atoms`` atoms extrapolated from a smaller case: memory above the
    RSS before the model call grows linearly with the structure (edges per atom are constant)."""
    grown = previous["peak_rss_mb"] - previous["rss_before_model_mb"]
    return previous["rss_before_model_mb"] + grown * atoms / previous["atoms"]


def flatness(results: list[dict[str, Any]], key: str = "ms_per_atom") -> float:
    """Largest over smallest ``key`` of the cases (1.0: perfectly flat)."""
    values = [r[key] for r in results]
    return max(values) / min(values)


def markdown_table(results: list[dict[str, Any]]) -> str:
    first = results[0] if results else None
    rows = [
        "| config | atoms | edges | edges/atom | outputs | chunking | calls | model wall s "
        "| ms/atom | vs first | CPU ms/atom | vs first | MFLOP/atom | GFLOP/s | GEMM peak GFLOP/s "
        "| fraction of peak | per CPU s | peak RSS MB | load (1 min) |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['config']} | {r['atoms']:,} | {r['edges']:,} | {r['edges_per_atom']:.1f} "
            f"| {', '.join(r['outputs'])} | {r['chunking']} | {r['calls']} "
            f"| {r['model_wall_s']:.2f} | {r['ms_per_atom']:.2f} "
            f"| {r['ms_per_atom'] / first['ms_per_atom']:.2f} | {r['cpu_ms_per_atom']:.2f} "
            f"| {r['cpu_ms_per_atom'] / first['cpu_ms_per_atom']:.2f} "
            f"| {r['mflop_per_atom']:.1f} | {r['gflops']:.1f} | {r['gemm_peak_gflops']:.1f} "
            f"| {100 * r['peak_fraction']:.1f} % | {100 * r['cpu_peak_fraction']:.1f} % "
            f"| {r['peak_rss_mb']:,.0f} "
            f"| {r['loadavg'][0] if r['loadavg'] else '?'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(bm.CONFIG_FILES), default="small")
    parser.add_argument("--atoms", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--stress", action="store_true", help="also compute the stress")
    parser.add_argument(
        "--chunking", nargs="+", default=["auto"], help="auto, off or a budget in MB (each run)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--min-time",
        type=float,
        default=2.0,
        metavar="S",
        help="repeat the timed call until S seconds have passed (at least once; default 2)",
    )
    parser.add_argument(
        "--min-calls",
        type=int,
        default=3,
        metavar="N",
        help="and at least N timed calls (default 3; one call of a small structure on a loaded "
        "machine is noisy)",
    )
    parser.add_argument(
        "--max-rss-mb",
        type=float,
        default=6000.0,
        metavar="MB",
        help="skip a case whose peak RSS, extrapolated from the previous (smaller) case, would "
        "exceed MB (default 6000: the machine is shared)",
    )
    parser.add_argument(
        "--gemm-size", type=int, default=bm.GEMM_PEAK_SIZE, help="side of the peak matmul"
    )
    parser.add_argument("--json", type=Path, help="append each case's result to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case here
    args = parser.parse_args(argv)

    if args.case:
        from eqv2 import tune_allocator

        tune_allocator()  # as eqv2's entry points do (eqv2.allocator)
        config, atoms, stress, chunking = json.loads(args.case)
        result = run_case(
            config,
            atoms,
            stress,
            chunking,
            args.threads,
            args.min_time,
            args.gemm_size,
            args.min_calls,
        )
        print("RESULT " + json.dumps(result))
        return 0

    results = []
    previous: dict[str, dict[str, Any]] = {}  # chunking -> the last case run with it
    for atoms in sorted(args.atoms):
        for chunking in args.chunking:
            if chunking in previous:
                predicted = predicted_peak_mb(previous[chunking], atoms)
                if predicted > args.max_rss_mb:
                    print(
                        f"skipped {atoms} atoms (chunking {chunking}): peak RSS extrapolated "
                        f"from {previous[chunking]['atoms']} atoms is {predicted:,.0f} MB > "
                        f"--max-rss-mb {args.max_rss_mb:,.0f}",
                        flush=True,
                    )
                    continue
            case = json.dumps([args.config, atoms, args.stress, chunking])
            cmd = [sys.executable, __file__, "--case", case, "--threads", str(args.threads)]
            cmd += ["--min-time", str(args.min_time), "--gemm-size", str(args.gemm_size)]
            cmd += ["--min-calls", str(args.min_calls)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"case {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                continue
            result = json.loads(lines[-1][len("RESULT ") :])
            results.append(result)
            previous[chunking] = result
            print(json.dumps(result), flush=True)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(result) + "\n")
    print(markdown_table(results))
    if len(results) > 1:
        print(
            f"\nlargest / smallest case: ms/atom {flatness(results):.2f}, CPU ms/atom "
            f"{flatness(results, 'cpu_ms_per_atom'):.2f}"
        )
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
