#!/usr/bin/env python
"""Energy conservation of smooth eqv2 models: NVE drift after training on EMT copper.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/bench_nve.py                        # all three models
    .venv/bin/python benchmarks/bench_nve.py --models smooth --steps 2000 --out smooth.json
    .venv/bin/python benchmarks/bench_nve.py --train-steps 2 --steps 5 --frames 4   # smoke

Data: EMT-labelled copper (ASE's EMT): rattled and strained 32-atom fcc bulk cells and rattled
Cu(100) slabs, ``--frames`` structures, seeded.

Models (the tests' tiny widths: one block, 8 channels, lmax 2 / mmax 1, cut-off ``--cutoff``),
each trained ``--train-steps`` Adam steps on energies and forces (its CPU time is reported):

* ``smooth``: conservative (forces = −dE/dx), polynomial envelope p = 5, no neighbour cap;
* ``conservative``: today's conservative model: −dE/dx forces, no envelope, the neighbour cap
  ``--max-neighbors`` (as the released configs have one);
* ``direct``: the direct force head, no envelope, the same cap.

Then NVE (velocity Verlet, ``--timestep-fs``, ``--steps``) from Maxwell-Boltzmann velocities at
``--temperature-K`` of a 64-atom Cu(100) slab (4×4×4, 10 Å vacuum) and 64-atom fcc bulk
(2×2×4 cubic cells), in float64. Reported: the drift of the total energy (slope of a linear fit,
meV/atom/ps), the largest |E(t) − E(0)| (meV/atom), ms per step. Prints a markdown table and
writes ``--out`` (JSON, atomically).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, fcc100
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.tiny import TINY_MODEL  # noqa: E402

from eqv2.data.targets import fit_element_references, fit_normalizers  # noqa: E402
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential  # noqa: E402
from eqv2.safe_io import write_json  # noqa: E402
from eqv2.simulate import EqV2Calculator  # noqa: E402
from eqv2.simulate.md import run_md  # noqa: E402
from eqv2.train.loader import LoaderConfig  # noqa: E402
from eqv2.train.trainer import Trainer, TrainerConfig  # noqa: E402

MODELS = ("smooth", "conservative", "direct")


def emt_frames(count: int, seed: int) -> list[Atoms]:
    """Rattled/strained Cu bulk (32 atoms) and rattled Cu(100) slabs with EMT labels."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(count):
        if k % 2 == 0:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
            atoms.set_cell(atoms.cell.array * (1 + rng.uniform(-0.03, 0.03)), scale_atoms=True)
        else:
            atoms = fcc100("Cu", size=(3, 3, 3), vacuum=6.0)
        atoms.positions += rng.normal(0.0, rng.uniform(0.03, 0.15), atoms.positions.shape)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def model_config(kind: str, args: argparse.Namespace) -> EquiformerV2Config:
    block: dict[str, Any] = {
        **TINY_MODEL,
        "max_radius": args.cutoff,
        "max_neighbors": args.max_neighbors,
        "alpha_drop": 0.0,
        "drop_path_rate": 0.0,
        "weight_init": "uniform",
        "direct_forces": kind == "direct",
    }
    if kind == "smooth":
        block.update(envelope={"type": "polynomial", "p": 5}, max_neighbors=None)
    return EquiformerV2Config(**block)


def train(kind: str, frames: list[Atoms], args: argparse.Namespace, out: Path) -> tuple:
    torch.manual_seed(args.seed)
    numbers = [a.numbers for a in frames]
    energies = [a.get_potential_energy() for a in frames]
    forces = [a.get_forces() for a in frames]
    refs = fit_element_references(numbers, energies)
    norm = fit_normalizers(energies, forces, numbers, refs)
    pot = Potential(EquiformerV2(model_config(kind, args)), norm, torch.as_tensor(refs))
    config = TrainerConfig(
        max_steps=args.train_steps,
        lr=3e-3,
        warmup_steps=max(1, args.train_steps // 20),
        max_atoms_per_batch=130,
        force_coefficient=20.0,
        energy_coefficient=4.0,
        eval_every=10**9,
        checkpoint_every=10**9,
        ema_decay=None,
        seed=args.seed,
    )
    losses: list[float] = []
    trainer = Trainer(
        pot,
        frames,
        out / kind,
        config,
        on_step=lambda r: losses.append(r["loss"]),
        loader=LoaderConfig(num_workers=0),  # a few small structures: no worker processes
    )
    cpu = time.process_time()
    trainer.fit()
    cpu = time.process_time() - cpu
    metrics = trainer.validate(trainer.train_set)
    pot = pot.to(torch.float64).eval()
    return pot, {"train_cpu_s": cpu, "loss_first": losses[0], "loss_last": losses[-1], **metrics}


def systems() -> dict[str, Atoms]:
    slab = fcc100("Cu", size=(4, 4, 4), vacuum=10.0)
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 4))
    return {"slab Cu(100) 64": slab, "bulk Cu fcc 64": cell}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--frames", type=int, default=40, help="EMT training structures")
    p.add_argument("--train-steps", type=int, default=150)
    p.add_argument("--cutoff", type=float, default=4.0, help="Å")
    p.add_argument("--max-neighbors", type=int, default=16, help="cap of the capped models")
    p.add_argument("--steps", type=int, default=10000, help="NVE steps (10 ps at 1 fs)")
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--temperature-K", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("bench_nve_runs"))
    p.add_argument("--out", type=Path, default=Path("bench_nve.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    frames = emt_frames(args.frames, args.seed)
    nve = dict(ensemble="nve", timestep_fs=args.timestep_fs, steps=args.steps, seed=args.seed)
    nve["temperature_K"] = args.temperature_K
    rows = []
    for kind in args.models:
        pot, fit = train(kind, frames, args, args.workdir)
        print(f"{kind}: trained {fit}", flush=True)
        calc = EqV2Calculator(pot, dtype=torch.float64)
        for name, atoms in systems().items():
            s = run_md(atoms, calc, **nve).summary()
            row = dict(model=kind, system=name, steps=s["steps"], **s["drift"])
            row.update(ms_per_step=s["ms_per_step"], mean_T_K=s["temperature_K"]["mean"])
            rows.append({**row, **{f"train_{k}": v for k, v in fit.items()}})
            print(f"{kind} {name}: {rows[-1]}", flush=True)
            report(rows, args)  # after every run: a long benchmark keeps what it measured
    return 0


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Print the markdown table of ``rows`` and write it with them to ``args.out``."""
    columns = {  # header: (row key, format)
        "model": ("model", "{}"),
        "system": ("system", "{}"),
        "steps": ("steps", "{}"),
        "ms/step (wall, loaded machine)": ("ms_per_step", "{:.0f}"),
        "drift (meV/atom/ps)": ("drift_meV_per_atom_per_ps", "{:.3g}"),
        "max abs dE (meV/atom)": ("max_abs_dE_meV_per_atom", "{:.3g}"),
    }
    table = [
        f"NVE {args.timestep_fs:g} fs, {args.temperature_K:g} K start, float64, cut-off "
        f"{args.cutoff:g} Å, cap {args.max_neighbors} (capped models), {args.threads} thread(s)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for r in rows:
        table.append("| " + " | ".join(f.format(r[k]) for k, f in columns.values()) + " |")
    markdown = "\n".join(table)
    print("\n" + markdown)
    argv = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    when = datetime.datetime.now().isoformat(timespec="seconds")
    meta = dict(date=when, machine=platform.platform(), torch=torch.__version__, argv=argv)
    write_json({"meta": meta, "results": rows, "markdown": markdown}, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
