#!/usr/bin/env python
"""Batched MD through torch-sim against one structure at a time (torch-sim and ASE engines).

Usage (from the repository root, with the project's virtual environment and the extra
``eqv2[torchsim]``):

    .venv/bin/python benchmarks/bench_torchsim_md.py                     # quickstart model
    .venv/bin/python benchmarks/bench_torchsim_md.py --size tiny --systems 4 --steps 2  # smoke

Systems: ``--systems`` rattled periodic cells (alternately 4-atom fcc Cu and 8-atom diamond
Si), NVE from 300 K for ``--steps`` steps of 1 fs, with the ``configs/quickstart.yaml`` model
block (``--size quickstart``) or the tests' tiny one, random seeded weights, forces −dE/dx.
The three ways run side by side in one process: ``batched`` (all systems in one torch-sim
state), ``torchsim_single`` and ``ase_single`` (one system after the other); per way the median
wall time of ``--repeats`` runs, and the ratios against ``batched``. The per-system energies of
the three are checked to agree (float64). Prints a markdown table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from ase.build import bulk

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from eqv2 import tune_allocator  # noqa: E402
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential  # noqa: E402
from eqv2.safe_io import write_json  # noqa: E402
from eqv2.simulate import EqV2Calculator  # noqa: E402
from eqv2.simulate.md import run_md  # noqa: E402
from eqv2.simulate.torchsim import EqV2TorchSimModel, run_md_batch  # noqa: E402


def _potential(size: str) -> Potential:
    if size == "tiny":
        from tests.tiny import tiny

        block = tiny(ffn_hidden_channels=8, lmax_list=[2], mmax_list=[1], grid_resolution=8)
    else:
        block = dict(yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())["model"])
    block.update(direct_forces=False)
    torch.manual_seed(0)
    return Potential(EquiformerV2(EquiformerV2Config(**block))).to(torch.float64).eval()


def _systems(n: int) -> list:
    cells = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True) if k % 2 == 0 else bulk("Si", cubic=True)
        atoms.rattle(0.05, seed=k)
        cells.append(atoms)
    return cells


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=("tiny", "quickstart"), default="quickstart")
    p.add_argument("--systems", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench_torchsim_md.json"))
    args = p.parse_args(argv)
    tune_allocator()  # as eqv2's CLI does: freed memory is reused (eqv2.allocator)
    torch.set_num_threads(args.threads)
    potential = _potential(args.size)
    model, calc = EqV2TorchSimModel(potential), EqV2Calculator(potential)
    cells = _systems(args.systems)
    run = dict(ensemble="nve", timestep_fs=1.0, steps=args.steps, temperature_K=300.0)

    ways = {
        "batched": lambda: run_md_batch(cells, model, seed=0, **run),
        "torchsim_single": lambda: [
            run_md_batch([a], model, seed=k, **run)[0] for k, a in enumerate(cells)
        ],
        "ase_single": lambda: [run_md(a, calc, seed=k, **run) for k, a in enumerate(cells)],
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    energies: dict[str, Any] = {}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits all ways alike
        for name, fn in ways.items():
            start = time.perf_counter()
            results = fn()
            times[name].append(time.perf_counter() - start)
            energies[name] = np.array([r.potential_energy for r in results])
    agree = max(float(np.abs(energies[n] - energies["batched"]).max()) for n in ways)
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [
        {
            "way": name,
            "median_s": median[name],
            "ms_per_system_step": 1000 * median[name] / (args.systems * (args.steps + 1)),
            "ratio_to_batched": median[name] / median["batched"],
        }
        for name in ways
    ]
    print(f"{args.systems} systems, {args.steps} NVE steps, {args.size} model, float64, "
          f"{args.threads} threads; max |ΔE_pot| between ways {agree:.1e} eV")  # fmt: skip
    print("| way | median s | ms per system-step | × batched |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['way']} | {r['median_s']:.2f} | {r['ms_per_system_step']:.1f} | "
              f"{r['ratio_to_batched']:.2f} |")  # fmt: skip
    write_json(
        {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": platform.platform(),
            "torch": torch.__version__,
            "settings": vars(args) | {"out": str(args.out)},
            "max_abs_dE_between_ways_eV": agree,
            "results": rows,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
