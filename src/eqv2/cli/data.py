"""``eqv2 data generate`` and ``eqv2 data convert``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="generate or convert datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    g = dsub.add_parser("generate", help="OC20-like slabs + adsorbates labelled by EMT (no DFT)")
    g.add_argument("--out", type=Path, required=True, help="output directory")
    g.add_argument("--systems", type=int, default=8, help="number of slab+adsorbate systems")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--relax-steps", type=int, default=20)
    g.add_argument("--rattle-frames", type=int, default=4)
    g.set_defaults(func=run_generate)

    c = dsub.add_parser("convert", help="write a preprocessed eqv2 store (LMDB)")
    c.add_argument("inputs", nargs="+", help="files to read (extxyz, ASE db, OC20 LMDB, ...)")
    c.add_argument("-o", "--output", type=Path, required=True)
    c.add_argument("--cutoff", type=float, help="also store edge counts for this cutoff (Å)")
    c.add_argument("--max-neighbors", type=int)
    c.add_argument("--energy-key", default="energy")
    c.add_argument("--forces-key", default="forces")
    c.add_argument("--overwrite", action="store_true")
    c.set_defaults(func=run_convert)


def run_generate(args: argparse.Namespace) -> int:
    from eqv2.data.generate import generate_dataset, write_dataset

    ds = generate_dataset(
        args.systems, args.seed, relax_steps=args.relax_steps, rattle_frames=args.rattle_frames
    )
    written = write_dataset(ds, args.out)
    print(f"{len(ds.s2ef_frames)} frames from {args.systems} systems (EMT stands in for DFT)")
    for name, path in written.items():
        print(f"  {name:<12} {path}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from eqv2.data.store import convert

    store = convert(
        args.inputs,
        args.output,
        cutoff=args.cutoff,
        max_neighbors=args.max_neighbors,
        overwrite=args.overwrite,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
    )
    print(f"wrote {len(store)} structures to {args.output}")
    return 0
