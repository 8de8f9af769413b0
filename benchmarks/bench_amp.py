#!/usr/bin/env python
"""Training-step time with and without bfloat16 autocast (``train.amp``), on one batch.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/bench_amp.py                         # small config, CPU
    .venv/bin/python benchmarks/bench_amp.py --configs small paper31m --device cuda

Input: the 4-system, 269-atom OC20-sized batch of ``bench_model.py`` with fixed random labels.
Each timed step is ``Trainer.train_step`` (graph, forward, loss, backward, clipping, AdamW, EMA)
with ``amp`` off (float32) and ``amp: bf16``; medians over ``--runs`` after ``--warmup`` steps.
Also reported: the relative difference of the bf16 forward's forces from float32's (same
weights), and on CUDA the peak allocated memory. bfloat16 pays off on GPUs with bf16 tensor
cores (A100, H100) and CPUs with AMX/AVX512-BF16; elsewhere it may be slower than float32.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _bench_model():
    spec = importlib.util.spec_from_file_location("bench_model", HERE / "bench_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_model"] = module
    spec.loader.exec_module(module)
    return module


def _labelled(structures):
    from eqv2.train.trainer import LabelledSet

    rng = np.random.default_rng(0)
    return LabelledSet(
        list(structures),
        rng.normal(size=len(structures)),
        [rng.normal(scale=0.5, size=(len(a), 3)) for a in structures],
        np.array([len(a) for a in structures]),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(config: dict, amp: str, device: str, warmup: int, runs: int) -> dict:
    from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
    from eqv2.train.trainer import Trainer, TrainerConfig

    structures = _bench_model().oc20_like_batch_structures()
    data = _labelled(structures)
    torch.manual_seed(0)
    potential = Potential(EquiformerV2(EquiformerV2Config.from_dict(config)))
    settings = TrainerConfig(max_steps=warmup + runs + 1, amp=amp, device=device,
                             tensorboard=False, max_atoms_per_batch=10_000)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(potential, data, out, settings)
        batch = list(range(len(structures)))
        dev = trainer.device
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        times = []
        for i in range(warmup + runs):
            _sync(dev)
            start = time.perf_counter()
            trainer.train_step(batch)
            _sync(dev)
            if i >= warmup:
                times.append(time.perf_counter() - start)
        # forward agreement of the same weights, float32 vs bfloat16 autocast
        potential.eval()
        graph = potential.build_graph(structures)
        with torch.no_grad():
            reference = potential(graph)["forces"].double()
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                low = potential(graph)["forces"].double()
        result = {
            "median_s": statistics.median(times),
            "structures_per_s": len(structures) / statistics.median(times),
            "bf16_force_rel_diff": float((low - reference).norm() / reference.norm()),
        }
        if dev.type == "cuda":
            result["peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["small"], help="bench_model configs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    configs = _bench_model().CONFIGS
    print("| config | amp | s/step | structures/s | peak GPU GB | bf16 forward: rel. ΔF |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.configs:
        base = None
        for amp in ("off", "bf16"):
            r = run_case(configs[name], amp, args.device, args.warmup, args.runs)
            base = base or r["median_s"]
            mem = f"{r['peak_mem_gb']:.2f}" if "peak_mem_gb" in r else "-"
            speed = f"{r['median_s']:.3f} ({base / r['median_s']:.2f}×)"
            rate, diff = r["structures_per_s"], r["bf16_force_rel_diff"]
            print(f"| {name} | {amp} | {speed} | {rate:.1f} | {mem} | {diff:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
