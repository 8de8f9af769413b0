#!/usr/bin/env python
"""MD cost and NVE energy drift of eqv2 models: direct force head against forces = −dE/dx.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/bench_md.py                         # quickstart-sized models
    .venv/bin/python benchmarks/bench_md.py --checkpoint runs/q/final.pt --steps 500
    .venv/bin/python benchmarks/bench_md.py --size tiny --steps 10 --timesteps 0.5   # smoke

System: the initial structure of one generated slab+adsorbate system (``eqv2.data.generate``,
seed ``--seed``; 17-31 atoms, bottom layers fixed). Models: the ``configs/quickstart.yaml``
model block (``--size quickstart``) or the tests' tiny one (``--size tiny``) with random seeded
weights, once with the direct force head and once with ``direct_forces: false``; or a trained
``--checkpoint`` as it is. ``--max-neighbors`` overrides the neighbour cap (a cap that drops
neighbours makes even −dE/dx forces jump when the neighbour ranking changes).

For each model and time step: NVE (velocity Verlet) from Maxwell-Boltzmann velocities at
``--temperature-K``, ``--steps`` steps; reported: ms per MD step (one model call with forces),
the drift of the total energy (slope of a linear fit, meV/atom/ps) and the largest
|E(t) − E(0)| (meV/atom). Prints a markdown table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from eqv2 import load_model, tune_allocator  # noqa: E402
from eqv2.data.generate import generate_dataset  # noqa: E402
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential  # noqa: E402
from eqv2.safe_io import write_json  # noqa: E402
from eqv2.simulate import EqV2Calculator  # noqa: E402
from eqv2.simulate.md import run_md  # noqa: E402


def _model_block(size: str) -> dict[str, Any]:
    if size == "tiny":
        from tests.tiny import tiny

        return tiny(ffn_hidden_channels=8, lmax_list=[2], mmax_list=[1], grid_resolution=8)
    return dict(yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())["model"])


def _models(args: argparse.Namespace) -> list[tuple[str, Potential]]:
    dtype = torch.float64 if args.float64 else torch.float32
    if args.checkpoint:
        pot = load_model(args.checkpoint, dtype=dtype)
        kind = "-dE/dx" if pot.conservative else "direct"
        return [(f"{Path(args.checkpoint).name} ({kind})", pot)]
    out = []
    for direct in (True, False):
        block = _model_block(args.size)
        if args.max_neighbors is not None:
            block["max_neighbors"] = args.max_neighbors
        block["direct_forces"] = direct
        torch.manual_seed(args.seed)
        pot = Potential(EquiformerV2(EquiformerV2Config(**block))).to(dtype=dtype)
        out.append((f"{args.size} random ({'direct' if direct else '-dE/dx'})", pot))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a trained eqv2/fairchem checkpoint instead")
    p.add_argument("--size", choices=("quickstart", "tiny"), default="quickstart")
    p.add_argument("--max-neighbors", type=int, help="override the neighbour cap")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--timesteps", type=float, nargs="+", default=[0.5, 1.0], help="fs")
    p.add_argument("--temperature-K", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--float64", action="store_true")
    p.add_argument("--out", type=Path, default=Path("bench_md.json"))
    args = p.parse_args(argv)
    tune_allocator()  # as eqv2's CLI does: freed memory is reused (eqv2.allocator)
    torch.set_num_threads(args.threads)

    atoms = generate_dataset(1, seed=args.seed, relax_steps=0, rattle_frames=0).systems[0].initial
    rows = []
    for name, pot in _models(args):
        calc = EqV2Calculator(pot, dtype=pot.dtype)
        for dt in args.timesteps:
            r = run_md(
                atoms,
                calc,
                ensemble="nve",
                timestep_fs=dt,
                steps=args.steps,
                temperature_K=args.temperature_K,
                seed=args.seed,
            )
            s = r.summary()
            rows.append(
                {
                    "model": name,
                    "timestep_fs": dt,
                    **s["drift"],
                    "ms_per_step": s["ms_per_step"],
                    "mean_temperature_K": s["temperature_K"]["mean"],
                }
            )
            print(f"{name} dt={dt:g} fs: {rows[-1]}", flush=True)
    head = (
        f"NVE, {atoms.get_chemical_formula()} ({len(atoms)} atoms), {args.steps} steps, "
        f"{args.temperature_K:g} K, {'float64' if args.float64 else 'float32'}, "
        f"{args.threads} threads"
    )
    table = [
        head,
        "",
        "| model | dt (fs) | ms/step | drift (meV/atom/ps) | max abs dE (meV/atom) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        table.append(
            f"| {r['model']} | {r['timestep_fs']:g} | {r['ms_per_step']:.1f} | "
            f"{r['drift_meV_per_atom_per_ps']:.3g} | {r['max_abs_dE_meV_per_atom']:.3g} |"
        )
    markdown = "\n".join(table)
    print("\n" + markdown)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "argv": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    write_json({"meta": meta, "results": rows, "markdown": markdown}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
