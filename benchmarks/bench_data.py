#!/usr/bin/env python
"""Training at dataset scale: memory independent of the dataset size, a pipeline that keeps up.

Usage (from the repository root; the numbers in docs/benchmarks.md came from this)::

    nice python benchmarks/make_synthetic_lmdb.py --out DATA/synth-20k --n 20000
    nice python benchmarks/make_synthetic_lmdb.py --out DATA/synth-200k --n 200000
    nice python benchmarks/bench_data.py --small DATA/synth-20k --large DATA/synth-200k \\
        --json bench_data.json
    # the pipeline ratio alone, on a quiet machine (waits up to 10 min for one)
    python benchmarks/bench_data.py --small DATA/synth-20k --cases pipeline --wait-quiet 600

The last line printed is a one-line summary (ratio, step times, load, other processes' CPU).

Three measurements, each case in its own process (its peak RSS is its own):

1. ``rss``: ``eqv2 train configs/quickstart.yaml --train DIR --max-steps 500`` (2 DataLoader
   workers, no validation set, the training split's final evaluation skipped) on the 20,000-
   and on the 200,000-structure OC20-like LMDB directory: peak RSS of the training process
   (``ru_maxrss``) and of its largest child (a DataLoader worker). Target: the two training
   processes' peaks differ by less than 10 %.
2. ``pipeline``: the quick-start model on the 20,000-structure set, the same step plans timed
   two ways in alternating rounds: ``advance`` (every batch read, labelled and collated before
   timing; the step is ``Trainer.train_step`` alone) and ``workers`` (batches from the
   DataLoader with 2 workers; the step includes waiting for the next batch). Medians over the
   rounds' steps; target: ``workers`` within 5 % of ``advance``. Also reported: the CPU the
   two workers spent per batch (read, label, neighbour lists, collate, pickle) and the cores
   other processes used meanwhile (``other_cores``: above ~0.3 the ratio is not a quiet-machine
   number; ``--wait-quiet`` waits for a quiet machine first).
3. ``s2ef_2m``: ``eqv2 train configs/s2ef_2m_base.yaml --train DIR`` (the paper's base model)
   for 2 steps of 2 structures on the 20,000-structure set: it runs, and how long it takes.

The machine may be shared: every ratio compares measurements taken in one run, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import bench_model as bm  # noqa: E402  (the quiet-machine machinery)

CASES = ("rss_small", "rss_large", "pipeline", "s2ef_2m")

_TRAIN_RSS = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
from eqv2.cli import main
t0 = time.perf_counter()
code = main({argv!r})
wall = time.perf_counter() - t0
kib = 1024
print(json.dumps(dict(code=code, wall_s=wall,
    peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
    peak_child_rss_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib)))
"""

_PIPELINE = """
import itertools, json, os, statistics, sys, tempfile, time
sys.path.insert(0, {src!r})
import torch
import eqv2
from eqv2.data import open_dataset
from eqv2.model import EquiformerV2, Potential
from eqv2.train.loader import LoaderConfig, iterate, make_loader
from eqv2.train.run_config import load_run_config
from eqv2.train.sampler import StepSampler
from eqv2.train.target_fit import stream_statistics
from eqv2.train.trainer import Trainer
from eqv2.train.workflow import fit_targets

torch.set_num_threads({threads})
eqv2.tune_allocator()  # as the CLI does
run = load_run_config({config!r}, ["train.device=cpu", "train.tensorboard=false"])
data = open_dataset({path!r}, require=("energy", "forces"))
normalizers, refs = fit_targets(stream_statistics(data, 2, 5000), run.data)
torch.manual_seed(0)
potential = Potential(EquiformerV2(run.model), normalizers, torch.as_tensor(refs))
out = tempfile.mkdtemp()
trainer = Trainer(potential, data, out, run.train, loader=LoaderConfig(num_workers=2))
per_round, rounds, warmup = {steps}, {rounds}, 3
times = dict(advance=[], workers=[])
worker_cpu, worker_batches = 0.0, 0
reader = trainer.reader(data)
for r in range(rounds):
    start = r * (per_round + warmup)
    sampler = StepSampler(trainer.plan, 0, 0, start)
    plans = list(itertools.islice(iter(sampler), per_round + warmup))
    for mode in ("advance", "workers") if r % 2 == 0 else ("workers", "advance"):
        if mode == "advance":
            batches = iter([reader[p] for p in plans])
        else:
            loader = make_loader(reader, StepSampler(trainer.plan, 0, 0, start),
                                 LoaderConfig(num_workers=2), torch.device("cpu"), 0)
            batches = iterate(loader)
        for k in range(per_round + warmup):
            t0 = time.perf_counter()
            trainer.train_step(next(batches))
            if k >= warmup:
                times[mode].append(time.perf_counter() - t0)
        if mode == "workers":  # CPU of the workers (they prefetch: count what they made)
            for w in loader._iterator._workers:
                with open(f"/proc/{{w.pid}}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                worker_cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            worker_batches += min(per_round + warmup + 2 * 2, len(plans))
        del batches
        if mode == "workers":
            del loader
print(json.dumps(dict(times=times, worker_cpu_s=worker_cpu, worker_batches=worker_batches,
                      natoms=[int(trainer.plan.natoms[p.indices].sum())
                                             for p in plans])))
"""


def _python(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-4000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_rss(data: Path, steps: int) -> dict:
    """Peak RSS of a quick-start training run on ``data`` (a fresh process)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", str(REPO / "configs" / "quickstart.yaml"), "--train", str(data),
                "--out", str(Path(tmp) / "run"), "--max-steps", str(steps), "--no-progress",
                "--set", "data.train_eval_structures=0", "--set", "data.num_workers=2",
                "--set", "train.device=cpu", "--set", f"train.checkpoint_every={steps}",
                "--set", "train.tensorboard=false"]  # fmt: skip
        result = _python(_TRAIN_RSS.format(src=str(REPO / "src"), argv=argv))
    if result["code"] != 0:
        raise RuntimeError(f"training on {data} exited with {result['code']}")
    return result


def pipeline(data: Path, steps: int, rounds: int, threads: int) -> dict:
    """Step times with batches prepared in advance and with 2 DataLoader workers."""
    config = str(REPO / "configs" / "quickstart.yaml")
    code = _PIPELINE.format(src=str(REPO / "src"), config=config, path=str(data), steps=steps,
                            rounds=rounds, threads=threads)  # fmt: skip
    busy0, own0, t0 = bm._busy_cpu_seconds(), bm._children_cpu_seconds(), time.perf_counter()
    raw = _python(code)
    wall = time.perf_counter() - t0
    own = bm._children_cpu_seconds() - own0
    med = {k: statistics.median(v) for k, v in raw["times"].items()}
    return {
        "advance_step_s": med["advance"],
        "workers_step_s": med["workers"],
        "workers_over_advance": med["workers"] / med["advance"],
        "steps_per_mode": len(raw["times"]["advance"]),
        "mean_atoms_per_step": statistics.mean(raw["natoms"]),
        "worker_cpu_ms_per_batch": 1e3 * raw["worker_cpu_s"] / max(raw["worker_batches"], 1),
        "other_cores": max(0.0, (bm._busy_cpu_seconds() - busy0 - own) / wall),
    }


def summary(result: dict) -> str:
    """The one-line summary printed last (what the lead copies into docs/benchmarks.md)."""
    parts = []
    if "pipeline" in result:
        p = result["pipeline"]
        parts.append(
            f"workers/advance {p['workers_over_advance']:.3f} (target <= 1.05; step "
            f"{p['advance_step_s']:.3f} s advance, {p['workers_step_s']:.3f} s with 2 workers; "
            f"worker CPU {p['worker_cpu_ms_per_batch']:.1f} ms/batch; other processes "
            f"{p['other_cores']:.2f} cores)"
        )
    if "rss_large_over_small" in result:
        parts.append(
            f"peak RSS 200k/20k {result['rss_large_over_small']:.3f} (target < 1.10; "
            f"{result['rss_large']['peak_rss_mib']:.0f} / {result['rss_small']['peak_rss_mib']:.0f}"
            " MiB)"
        )
    load = "/".join(f"{x:.1f}" for x in result["load_avg_start"])
    end = "/".join(f"{x:.1f}" for x in result["load_avg_end"])
    parts.append(f"load avg {load} at start, {end} at end, {result['cpus']} CPUs")
    return "bench_data: " + "; ".join(parts)


def s2ef_2m_steps(data: Path) -> dict:
    """The paper's base config for 2 steps of 2 structures (it runs; how long)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["train", str(REPO / "configs" / "s2ef_2m_base.yaml"), "--train", str(data),
                "--out", str(Path(tmp) / "run"), "--max-steps", "2", "--no-progress",
                "--set", "train.max_structures_per_batch=2", "--set", "train.device=cpu",
                "--set", "data.train_eval_structures=0", "--set", "data.num_workers=1",
                "--set", "train.tensorboard=false"]  # fmt: skip
        result = _python(_TRAIN_RSS.format(src=str(REPO / "src"), argv=argv))
        log = (Path(tmp) / "run" / "log.csv").read_text().splitlines()
    return {"exit_code": result["code"], "wall_s": result["wall_s"], "log_rows": len(log) - 1,
            "peak_rss_mib": result["peak_rss_mib"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=Path, required=True, help="20,000-structure LMDB directory")
    p.add_argument("--large", type=Path, help="200,000-structure LMDB directory")
    p.add_argument("--steps", type=int, default=500, help="training steps of the RSS runs")
    p.add_argument("--pipeline-steps", type=int, default=30, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds of both modes")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the timed process")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES,
                   help="what to run (rss_small + rss_large give the RSS ratio)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for other processes to go quiet first")  # fmt: skip
    args = p.parse_args(argv)
    if args.wait_quiet:
        bm.wait_until_quiet(args.wait_quiet)

    result: dict = {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_start": os.getloadavg()}  # fmt: skip
    t0 = time.perf_counter()
    if "rss_small" in args.cases:
        result["rss_small"] = train_rss(args.small, args.steps)
    if "rss_large" in args.cases:
        if args.large is None:
            p.error("rss_large needs --large")
        result["rss_large"] = train_rss(args.large, args.steps)
    if "rss_small" in result and "rss_large" in result:
        big, small = result["rss_large"]["peak_rss_mib"], result["rss_small"]["peak_rss_mib"]
        result["rss_large_over_small"] = big / small
    if "pipeline" in args.cases:
        result["pipeline"] = pipeline(args.small, args.pipeline_steps, args.rounds, args.threads)
    if "s2ef_2m" in args.cases:
        result["s2ef_2m"] = s2ef_2m_steps(args.small)
    result["total_s"] = time.perf_counter() - t0
    result["load_avg_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
