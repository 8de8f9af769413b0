#!/usr/bin/env python
"""Batched relaxation engine against the sequential ASE loop (LBFGS or FIRE), both in one run.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/bench_relax.py                        # 64 systems, quickstart model
    .venv/bin/python benchmarks/bench_relax.py --n 8 --model tiny     # quick check
    .venv/bin/python benchmarks/bench_relax.py --checkpoint runs/demo/run/final.pt
    .venv/bin/python benchmarks/bench_relax.py --max-atoms 128 512 4096   # budgets compared
    .venv/bin/python benchmarks/bench_relax.py --device cuda --max-atoms 8192
    .venv/bin/python benchmarks/bench_relax.py --cell --n 32 --model tiny --optimizer fire

Input: ``--n`` OC20-like slab+adsorbate systems from ``eqv2.data.generate`` (initial structures,
bottom layers fixed, ``--sizes``/``--layers`` control their size). Model: a checkpoint, or random
weights of a preset (``quickstart``: configs/quickstart.yaml's model; ``tiny``: the test suite's
relaxation model, tests/simulate/relax/tiny_relax.py), energy-conserving
(``direct_forces=False``) unless ``--direct-forces``, since a random direct-force head is not a
gradient and LBFGS would rarely converge on it.

``--cell``: variable-cell relaxations instead. Input: ``--n`` strained bulk crystals (the eight
of ``benchmarks/materials_workflow.py``, 1-8 atoms each, new strains for every further eight,
``--supercell k`` repeats each k×k×k); positions and cells relax together, the sequential side
through ASE's ``FrechetCellFilter`` (its calculator returns the stress with the forces, so one
model evaluation per step, as the batched side), the batched side with ``cell=True``.

Both sides use the same model object, the same optimiser (``--optimizer``: LBFGS with the OC20
settings, max step 0.04 Å, memory 50, damping 1, initial curvature 70; or FIRE with ASE's
defaults), ``--fmax`` and ``--steps``:

* sequential: for each structure the ASE optimiser with ``eqv2.EqV2Calculator``;
* batched: ``eqv2.simulate.relax_structures`` (in-flight batching), once per ``--max-atoms``
  budget given (on a CPU the model is compute-bound and large batches can be slower per atom,
  so compare a few budgets; on a GPU, large budgets pay).

One warm-up evaluation precedes the timing. Reported: wall times, the ratio sequential/batched
for each budget (> 1: batched is faster), model evaluations on each side, converged counts, and
the agreement of final energies (max and median |ΔE|; LBFGS without line search is chaotic on
rough landscapes, so float noise can send single structures to different nearby minima, as it
does ASE against itself). ``--out`` writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: Energy scale (std) of the random presets, chosen so initial forces are ~0.3-0.6 eV/Å.
ENERGY_SCALE = {"quickstart": 20.0, "tiny": 2.0}


def build_potential(args: argparse.Namespace):
    """The benchmarked model on ``args.device`` in ``args.dtype``."""
    from eqv2 import tune_allocator
    from eqv2.model import EquiformerV2, EquiformerV2Config, Potential, load_model
    from eqv2.train.run_config import load_run_config

    tune_allocator()  # as eqv2's CLI does: freed memory is reused (eqv2.allocator)
    dtype = getattr(torch, args.dtype)
    if args.checkpoint:
        return load_model(args.checkpoint, dtype=dtype, device=args.device)
    if args.model == "tiny":
        sys.path.insert(0, str(REPO))  # for the test suite's relaxation model
        from tests.simulate.relax.tiny_relax import RELAX_MODEL

        config = EquiformerV2Config(**RELAX_MODEL)
    else:
        config = load_run_config(REPO / "configs" / "quickstart.yaml").model
    config = EquiformerV2Config.from_dict({**config.to_dict(), "direct_forces": args.direct_forces})
    torch.manual_seed(args.seed)
    scale = args.energy_scale if args.energy_scale is not None else ENERGY_SCALE[args.model]
    potential = Potential(EquiformerV2(config), normalizers={"energy": {"std": scale}})
    return potential.to(device=args.device, dtype=dtype).eval()


def structures(args: argparse.Namespace):
    if args.cell:
        sys.path.insert(0, str(HERE))  # the crystal set of the materials workflow example
        from materials_workflow import bulk_crystals

        crystals = [
            a.repeat(args.supercell)
            for seed in range(0, args.n + 7, 8)
            for a in bulk_crystals(seed=args.seed + seed)
        ]
        return crystals[: args.n]
    from eqv2.data.generate import generate_dataset

    ds = generate_dataset(
        args.n,
        seed=args.seed,
        relax_steps=0,
        rattle_frames=0,
        sizes=tuple(tuple(int(v) for v in s.split("x")) for s in args.sizes),
        layers=tuple(args.layers),
    )
    return [s.initial for s in ds.systems]


def _ase_optimizer(target, optimizer: str):
    from ase.optimize import FIRE, LBFGS

    if optimizer == "fire":
        return FIRE(target, logfile=None)
    return LBFGS(target, maxstep=0.04, memory=50, damping=1.0, alpha=70.0, logfile=None)


def run_sequential(
    potential, items, fmax: float, steps: int, optimizer: str = "lbfgs", cell: bool = False
) -> dict[str, Any]:
    from ase.filters import FrechetCellFilter

    from eqv2.simulate import EqV2Calculator

    class StressWithForces(EqV2Calculator):
        """One evaluation per step for a cell relaxation: the stress comes with the forces."""

        def calculate(self, atoms=None, properties=None, system_changes=None):
            extra = ["stress"] if cell else []
            super().calculate(atoms, [*(properties or ["energy"]), *extra], system_changes)

    calc = StressWithForces(potential, device=potential.device, dtype=potential.dtype)
    energies, n_steps, converged = [], [], []
    start = time.perf_counter()
    for atoms in items:
        atoms = atoms.copy()
        atoms.calc = calc
        opt = _ase_optimizer(FrechetCellFilter(atoms) if cell else atoms, optimizer)
        converged.append(bool(opt.run(fmax=fmax, steps=steps)))
        energies.append(float(atoms.get_potential_energy()))
        n_steps.append(int(opt.nsteps))
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, energies=energies, steps=n_steps, converged=converged)


def run_batched(
    potential,
    items,
    fmax: float,
    steps: int,
    max_atoms: int | None,
    optimizer: str = "lbfgs",
    cell: bool = False,
):
    from eqv2.simulate import relax_structures

    calls = {"n": 0}
    forward = potential.forward

    def counted(graph, stress=False):
        calls["n"] += 1
        return forward(graph, stress=stress)

    potential.forward = counted
    try:
        start = time.perf_counter()
        results = relax_structures(
            potential,
            items,
            optimizer=optimizer,
            fmax=fmax,
            steps=steps,
            max_atoms=max_atoms,
            cell=cell,
        )
        seconds = time.perf_counter() - start
    finally:
        del potential.forward
    failed = [r.error for r in results if r.error is not None]
    if failed:
        raise RuntimeError(f"batched relaxation failed for {len(failed)}: {failed[0]}")
    return dict(
        seconds=seconds,
        energies=[r.energy for r in results],
        steps=[r.steps for r in results],
        converged=[r.converged for r in results],
        model_calls=calls["n"],
    )


def compare(budget: int, batched: dict[str, Any], sequential: dict[str, Any]) -> dict[str, Any]:
    """One batched run's numbers next to the sequential run's."""
    delta = np.abs(np.array(batched["energies"]) - np.array(sequential["energies"]))
    return dict(
        max_atoms=budget,
        seconds=batched["seconds"],
        speedup=sequential["seconds"] / batched["seconds"],
        model_calls=batched["model_calls"],
        evaluations=int(sum(batched["steps"]) + len(delta)),
        converged=int(sum(batched["converged"])),
        max_abs_dE=float(delta.max()),
        median_abs_dE=float(np.median(delta)),
        n_within_0p01_eV=int((delta <= 0.01).sum()),
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="number of structures (64)")
    p.add_argument("--sizes", nargs="+", default=["2x2", "3x3"], help="slab repeats, e.g. 2x2")
    p.add_argument("--layers", type=int, nargs="+", default=[3, 4])
    p.add_argument("--model", choices=("quickstart", "tiny"), default="quickstart")
    p.add_argument("--checkpoint", help="use this checkpoint instead of random weights")
    p.add_argument("--direct-forces", action="store_true", help="random model with force head")
    p.add_argument(
        "--energy-scale", type=float, help="random model energy std (quickstart 20, tiny 2)"
    )
    p.add_argument("--cell", action="store_true", help="variable-cell relaxations of crystals")
    p.add_argument("--supercell", type=int, default=1, help="with --cell: k×k×k repeats (1)")
    p.add_argument("--optimizer", choices=("lbfgs", "fire"), default="lbfgs")
    p.add_argument("--fmax", type=float, default=0.05)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument(
        "--max-atoms", type=int, nargs="+", default=[4096], help="batched atom budget(s) (4096)"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    potential = build_potential(args)
    items = structures(args)
    potential.predict(items[0], stress=args.cell)  # warm-up: lazy caches, first-call allocations
    _sync(args.device)

    sequential = run_sequential(potential, items, args.fmax, args.steps, args.optimizer, args.cell)
    _sync(args.device)
    runs = []
    for budget in args.max_atoms:
        batched = run_batched(
            potential, items, args.fmax, args.steps, budget, args.optimizer, args.cell
        )
        _sync(args.device)
        runs.append(compare(budget, batched, sequential))

    summary = dict(
        n_structures=len(items),
        n_atoms=int(sum(len(a) for a in items)),
        model=args.checkpoint or args.model,
        cell=args.cell,
        optimizer=args.optimizer,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        fmax=args.fmax,
        steps=args.steps,
        sequential_s=sequential["seconds"],
        sequential_evaluations=int(sum(sequential["steps"]) + len(items)),
        sequential_converged=int(sum(sequential["converged"])),
        batched=runs,
        python=platform.python_version(),
        torch=torch.__version__,
        machine=platform.machine(),
    )
    print(
        f"{summary['n_structures']} structures ({summary['n_atoms']} atoms), model "
        f"{summary['model']}, {args.device} {args.dtype}, fmax {args.fmax}, steps {args.steps}"
    )
    print(
        f"  sequential ASE {args.optimizer}{' + FrechetCellFilter' if args.cell else ''}: "
        f"{sequential['seconds']:8.2f} s, "
        f"{summary['sequential_evaluations']} evaluations, "
        f"{summary['sequential_converged']} converged"
    )
    for run in runs:
        print(
            f"  batched, max_atoms {run['max_atoms']}: {run['seconds']:8.2f} s, "
            f"{run['evaluations']} evaluations in {run['model_calls']} model calls, "
            f"{run['converged']} converged; speed-up {run['speedup']:.2f}x; final energies: "
            f"max |dE| {run['max_abs_dE']:.2e} eV, median {run['median_abs_dE']:.2e} eV, "
            f"{run['n_within_0p01_eV']}/{len(items)} within 0.01 eV"
        )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
