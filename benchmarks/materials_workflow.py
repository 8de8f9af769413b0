#!/usr/bin/env python
"""A materials workflow with an eqv2 model: an E(V) curve, then a batched cell relaxation.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/materials_workflow.py                      # random tiny model
    .venv/bin/python benchmarks/materials_workflow.py --checkpoint MODEL.pt [--device cuda]
    .venv/bin/python benchmarks/materials_workflow.py --checkpoint MODEL.pt --pressure 5

``MODEL.pt`` is any checkpoint ``eqv2.load_model`` reads whose model gives a stress (every
model does: the strain derivative of its energy, or its stress head), e.g. an OMat24-family
file such as ``eqV2_31M_omat_mp_salex.pt`` downloaded from fairchem's release page. Without
``--checkpoint`` the test suite's small energy-conserving model with random weights (seed 0)
stands in: the numbers then show the workflow, not physics.

1. **E(V)**: ``--eos`` crystal (default fcc Cu) scaled from -6 % to +6 % in lattice constant,
   all strains evaluated in one batched call; energy per atom, volume per atom and pressure
   ``P = -tr(σ)/3``, then a Birch-Murnaghan fit (``ase.eos``) giving V0, E0 and B.
2. **Batched cell relaxation** of eight bulk crystals (1-8 atoms each), strained by up to 3 %,
   positions and cells together (``relax_structures(..., cell=CellFilter(pressure=p))``) with
   one model call per step for all of them; per crystal: converged, steps, energy per atom,
   volume per atom and pressure (GPa).

``--out FILE.json`` writes every number. Units: eV, Å, GPa on the screen; the API works in
eV/Å³ (``ase.units.GPa`` converts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.units import GPa

REPO = Path(__file__).resolve().parent.parent


def bulk_crystals(strain: float = 0.03, rattle: float = 0.03, seed: int = 0) -> list[Atoms]:
    """Eight bulk crystals (1-8 atoms), each strained by up to ``strain`` and rattled (Å)."""
    crystals = {
        "Cu-fcc": bulk("Cu", "fcc", a=3.6, cubic=True),
        "NaCl-rocksalt": bulk("NaCl", "rocksalt", a=5.6),
        "Si-diamond": bulk("Si", "diamond", a=5.43),
        "Fe-bcc": bulk("Fe", "bcc", a=2.87, cubic=True),
        "MgO-rocksalt": bulk("MgO", "rocksalt", a=4.2, cubic=True),
        "Cu-fcc-2x1x1": bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)),
        "Al-fcc": bulk("Al", "fcc", a=4.05),
        "ZnO-wurtzite": bulk("ZnO", "wurtzite", a=3.25, c=5.2),
    }
    out = []
    for k, (name, atoms) in enumerate(crystals.items()):
        rng = np.random.default_rng(seed + k)
        e = rng.uniform(-strain, strain, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (e + e.T) / 2), scale_atoms=True)
        atoms.rattle(rattle, seed=seed + k)
        atoms.info["name"] = name
        out.append(atoms)
    return out


def load_potential(checkpoint: str | None, device: str, dtype: torch.dtype):
    """The checkpoint's model, or the stand-in: the test suite's small energy-conserving
    relaxation model with random weights (tests/simulate/relax/tiny_relax.py, seed 0)."""
    from eqv2 import tune_allocator
    from eqv2.model import load_model

    tune_allocator()  # as eqv2's CLI does: freed memory is reused (eqv2.allocator)
    if checkpoint:
        return load_model(checkpoint, device=device, dtype=dtype)
    sys.path.insert(0, str(REPO))
    from tests.simulate.relax.tiny_relax import make_potential

    return make_potential(dtype).to(device)


def pressure_gpa(stress: np.ndarray) -> float:
    """``P = -tr(σ)/3`` in GPa from a (3, 3) stress in eV/Å³ (ASE's sign)."""
    return float(-np.trace(stress) / 3 / GPa)


def energy_volume(potential, crystal: Atoms, n_points: int = 9) -> dict[str, Any]:
    """E(V) and P(V) over ±6 % in lattice constant, one batched call; a Birch-Murnaghan fit."""
    from ase.eos import EquationOfState

    scales = np.linspace(0.94, 1.06, n_points)
    strained = []
    for s in scales:
        atoms = crystal.copy()
        atoms.set_cell(crystal.cell.array * s, scale_atoms=True)
        strained.append(atoms)
    results = potential.predict(strained, batch_size=n_points, stress=True)
    n = len(crystal)
    volumes = np.array([a.get_volume() for a in strained])
    energies = np.array([r["energy"] for r in results])
    curve = dict(
        scale=scales.tolist(),
        volume_per_atom=(volumes / n).tolist(),
        energy_per_atom=(energies / n).tolist(),
        pressure_gpa=[pressure_gpa(r["stress"]) for r in results],
    )
    try:
        v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
        curve["fit"] = dict(v0_per_atom=v0 / n, e0_per_atom=e0 / n, bulk_modulus_gpa=b / GPa)
    except (RuntimeError, ValueError) as exc:  # no minimum inside the range
        curve["fit"] = dict(error=str(exc))
    return curve


def relax_crystals(
    potential, crystals: list[Atoms], pressure: float, fmax: float, steps: int, optimizer: str
) -> list[dict[str, Any]]:
    """Relax positions and cells of all crystals in one batch at ``pressure`` (GPa)."""
    from eqv2.simulate import CellFilter, relax_structures

    results = relax_structures(
        potential,
        crystals,
        optimizer=optimizer,
        fmax=fmax,
        steps=steps,
        cell=CellFilter(pressure=pressure * GPa),
    )
    rows = []
    for atoms, r in zip(crystals, results, strict=True):
        row: dict[str, Any] = dict(
            name=atoms.info["name"], formula=atoms.get_chemical_formula(), atoms=len(atoms)
        )
        if r.error is not None:
            row["error"] = r.error
        else:
            n = len(r.atoms)
            row.update(
                converged=r.converged,
                steps=r.steps,
                energy_per_atom=r.energy / n,
                volume_per_atom=r.atoms.get_volume() / n,
                start_volume_per_atom=atoms.get_volume() / n,
                pressure_gpa=pressure_gpa(r.stress),
            )
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="eqv2 or fairchem checkpoint (default: random tiny)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--pressure", type=float, default=0.0, help="external pressure, GPa (0)")
    p.add_argument("--fmax", type=float, default=0.05, help="eV/Å, atoms and cell (0.05)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--optimizer", choices=("fire", "lbfgs"), default="fire")
    p.add_argument("--eos", type=int, default=0, help="index of the E(V) crystal (0: Cu)")
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)

    potential = load_potential(args.checkpoint, args.device, getattr(torch, args.dtype))
    crystals = bulk_crystals()
    unstrained = bulk_crystals(strain=0.0, rattle=0.0)[args.eos]
    curve = energy_volume(potential, unstrained)
    print(f"E(V) of {unstrained.info['name']} ({unstrained.get_chemical_formula()}):")
    print("  V/atom (Å³)   E/atom (eV)   P (GPa)")
    for v, e, pr in zip(
        curve["volume_per_atom"], curve["energy_per_atom"], curve["pressure_gpa"], strict=True
    ):
        print(f"  {v:10.3f}   {e:11.5f}   {pr:8.3f}")
    fit = curve["fit"]
    if "error" in fit:
        print(f"  Birch-Murnaghan fit failed: {fit['error']}")
    else:
        print(
            f"  Birch-Murnaghan: V0 {fit['v0_per_atom']:.3f} Å³/atom, E0 "
            f"{fit['e0_per_atom']:.5f} eV/atom, B {fit['bulk_modulus_gpa']:.1f} GPa"
        )

    rows = relax_crystals(potential, crystals, args.pressure, args.fmax, args.steps, args.optimizer)
    print(
        f"Cell relaxation of {len(crystals)} crystals in one batch ({args.optimizer}, fmax "
        f"{args.fmax} eV/Å, pressure {args.pressure} GPa):"
    )
    print("  name            atoms  conv  steps   E/atom (eV)  V/atom (Å³)  from    P (GPa)")
    for row in rows:
        if "error" in row:  # the reason's first sentence (the whole message is in --out)
            reason = row["error"].split(": ", 1)[-1].split(". ")[0]
            print(f"  {row['name']:<15} {row['atoms']:5d}  failed: {reason}")
            continue
        print(
            f"  {row['name']:<15} {row['atoms']:5d}  {'yes' if row['converged'] else 'no ':<4}"
            f"  {row['steps']:5d}  {row['energy_per_atom']:12.5f}  "
            f"{row['volume_per_atom']:11.3f}  {row['start_volume_per_atom']:6.2f}  "
            f"{row['pressure_gpa']:8.3f}"
        )
    if args.out:
        summary = dict(
            model=args.checkpoint or "random tiny (seed 0)",
            pressure_gpa=args.pressure,
            fmax=args.fmax,
            optimizer=args.optimizer,
            energy_volume=curve,
            relaxed=rows,
        )
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
