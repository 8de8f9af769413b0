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

Reported per case: atoms, edges, graph-construction and model wall and CPU time
(`time.process_time`, all threads), CPU time per atom, peak RSS (``ru_maxrss``, including the
~0.3 GB of the interpreter and torch) and RSS before the model call. On a loaded machine wall
times are meaningless; CPU time per atom is the comparable measure (it still grows under load
as threads spin and caches are shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def run_case(config: str, atoms: int, stress: bool, chunking: str, threads: int) -> dict:
    """One measurement in this process (called in a fresh subprocess by `main`)."""
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
    wall, cpu = time.perf_counter(), time.process_time()
    out = pot.compute(graph, stress=stress)
    model_wall, model_cpu = time.perf_counter() - wall, time.process_time() - cpu
    num_atoms = len(structure)
    return {
        "config": config,
        "atoms": num_atoms,
        "edges": int(graph["edge_index"].shape[1]),
        "stress": stress,
        "chunking": chunking,
        "outputs": sorted(out),
        "finite": all(bool(abs(v).max() < float("inf")) for v in out.values()),
        "threads": threads,
        "graph_wall_s": graph_wall,
        "graph_cpu_s": graph_cpu,
        "model_wall_s": model_wall,
        "model_cpu_s": model_cpu,
        "cpu_ms_per_atom": 1e3 * model_cpu / num_atoms,
        "rss_before_model_mb": rss_before,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "loadavg": bm._loadavg(),
    }


def markdown_table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| config | atoms | edges | outputs | chunking | model wall s | model CPU s "
        "| CPU ms/atom | graph CPU s | peak RSS MB | load (1 min) |",
        "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r['config']} | {r['atoms']:,} | {r['edges']:,} | {', '.join(r['outputs'])} "
            f"| {r['chunking']} | {r['model_wall_s']:.1f} | {r['model_cpu_s']:.1f} "
            f"| {r['cpu_ms_per_atom']:.2f} | {r['graph_cpu_s']:.2f} | {r['peak_rss_mb']:,.0f} "
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
    parser.add_argument("--json", type=Path, help="append each case's result to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case here
    args = parser.parse_args(argv)

    if args.case:
        from eqv2 import tune_allocator

        tune_allocator()  # as eqv2's entry points do (eqv2.allocator)
        config, atoms, stress, chunking = json.loads(args.case)
        print("RESULT " + json.dumps(run_case(config, atoms, stress, chunking, args.threads)))
        return 0

    results = []
    for atoms in args.atoms:
        for chunking in args.chunking:
            case = json.dumps([args.config, atoms, args.stress, chunking])
            cmd = [sys.executable, __file__, "--case", case, "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"case {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
                continue
            result = json.loads(lines[-1][len("RESULT ") :])
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(result) + "\n")
    print(markdown_table(results))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
