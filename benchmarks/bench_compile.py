#!/usr/bin/env python
"""torch.compile of eqv2's inference path: recompiles across structure sizes, compile time, gain.

Usage (from the repository root; `nice` it on a shared machine, compiling is CPU-heavy):

    python benchmarks/bench_compile.py --config small --atoms 40 80 120 160 200 --threads 1
    python benchmarks/bench_compile.py --config tiny --backend eager   # tracing only, no codegen

The model (a config's ``model`` section, random weights, float32, eval) is wrapped by
`eqv2.model.compile.compile_inference` (``torch.compile(dynamic=True)`` with an eager
fallback) and called under ``torch.inference_mode()`` on Cu slabs with CO of the given sizes
(`bench_large.cu_slab_with_adsorbates`), in that order. Reported per size: the first compiled
call (it includes any (re)compilation), then the median of ``--runs`` compiled and eager calls
(alternating), the compiled graphs counted so far (a new size that recompiles adds one), and
the largest force difference to eager. Wall and CPU time (``time.process_time``) are both
given: on a loaded machine only CPU time and the compiled/eager ratio are comparable.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_large as bl  # noqa: E402  (the slab builder)
import bench_model as bm  # noqa: E402  (configs)


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(config: str, sizes: list[int], backend: str, runs: int, threads: int) -> dict:
    """Compile once, call on every size; returns the per-size rows and the fallback state."""
    import torch

    from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
    from eqv2.model.compile import compile_inference

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = EquiformerV2(EquiformerV2Config.from_dict(bm.CONFIGS[config])).eval()
    graph_builder = Potential(model).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = compile_inference(model, backend=backend)
    rows = []
    for size in sizes:
        graph = graph_builder.build_graph([bl.cu_slab_with_adsorbates(size)])
        with torch.inference_mode(), warnings.catch_warnings(record=True) as more:
            warnings.simplefilter("always")
            before = compiled.compiles
            first_wall, first_cpu = _timed(lambda g=graph: compiled(g))
            times = {"compiled": [], "eager": []}
            for _ in range(runs):
                times["compiled"].append(_timed(lambda g=graph: compiled(g)))
                times["eager"].append(_timed(lambda g=graph: model(g)))
            diff = (compiled(graph)["forces"] - model(graph)["forces"]).abs().max().item()
        caught.extend(more)
        med = {
            (kind, i): statistics.median(t[i] for t in values)
            for kind, values in times.items()
            for i in (0, 1)
        }
        rows.append(
            {
                "atoms": int(graph["pos"].shape[0]),
                "edges": int(graph["edge_index"].shape[1]),
                "first_call_wall_s": first_wall,
                "first_call_cpu_s": first_cpu,
                "new_graphs": compiled.compiles - before,
                "graphs_so_far": compiled.compiles,
                "compiled_wall_s": med["compiled", 0],
                "compiled_cpu_s": med["compiled", 1],
                "eager_wall_s": med["eager", 0],
                "eager_cpu_s": med["eager", 1],
                "speedup_cpu": med["eager", 1] / med["compiled", 1],
                "max_force_diff": diff,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return {
        "config": config,
        "backend": backend,
        "threads": threads,
        "compiled": compiled.compiled,
        "fallback_reason": compiled.fallback_reason,
        "warnings": sorted({str(w.message)[:200] for w in caught}),
        "rows": rows,
    }


def markdown_table(result: dict) -> str:
    rows = [
        "| atoms | edges | first call s (wall / CPU) | new graphs | graphs so far "
        "| compiled CPU s | eager CPU s | eager / compiled (CPU) | max |ΔF| |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        rows.append(
            f"| {r['atoms']} | {r['edges']} | {r['first_call_wall_s']:.1f} / "
            f"{r['first_call_cpu_s']:.1f} | {r['new_graphs']} | {r['graphs_so_far']} "
            f"| {r['compiled_cpu_s']:.3f} | {r['eager_cpu_s']:.3f} | {r['speedup_cpu']:.2f}× "
            f"| {r['max_force_diff']:.1e} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(bm.CONFIG_FILES), default="small")
    parser.add_argument("--atoms", type=int, nargs="+", default=[40, 80, 120, 160, 200])
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per size and mode")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the result to this file")
    args = parser.parse_args(argv)

    from eqv2 import tune_allocator

    tune_allocator()  # as eqv2's entry points do (eqv2.allocator)
    result = run(args.config, args.atoms, args.backend, args.runs, args.threads)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(f"compiled: {result['compiled']}; fallback: {result['fallback_reason']}")
    print(markdown_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
