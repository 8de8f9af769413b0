"""``eqv2 predict CHECKPOINT INPUT -o OUTPUT``: energies and forces for every structure."""

from __future__ import annotations

import argparse
from pathlib import Path

from eqv2.cli.model_args import add_model_arguments, load_potential


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict energies and forces with a checkpoint")
    p.add_argument("checkpoint", type=Path, help="eqv2 or fairchem checkpoint (.pt)")
    p.add_argument("input", type=Path, help="structures readable by ASE (extxyz, traj, db, ...)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .extxyz")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--stress",
        action="store_true",
        help="also predict the stress (eV/Å³, ASE's sign: positive under tension; written in "
        "Voigt order xx yy zz yz xz xy) from the model's stress head, or else as the strain "
        "derivative of the energy",
    )
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write
    from ase.stress import full_3x3_to_voigt_6_stress

    from eqv2.atomic import atomic_write_path

    potential = load_potential(args)
    structures = read(args.input, ":")
    results = potential.predict(structures, batch_size=args.batch_size, stress=args.stress)
    for atoms, res in zip(structures, results, strict=True):
        extra = {"stress": full_3x3_to_voigt_6_stress(res["stress"])} if args.stress else {}
        atoms.calc = SinglePointCalculator(
            atoms, energy=res["energy"], forces=res["forces"], **extra
        )
    with atomic_write_path(args.output) as tmp:
        write(tmp, structures, format="extxyz")
    print(f"wrote {len(structures)} structures to {args.output}")
    return 0
