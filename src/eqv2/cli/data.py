"""``eqv2 data generate``, ``eqv2 data convert`` and ``eqv2 data index``."""

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

    x = dsub.add_parser(
        "index",
        help="build the random-access index of a dataset (extxyz, ASE db, OC20 LMDB)",
        description="Build (or check) the index that lets eqv2 open a dataset without "
        "decoding it: byte offsets of extxyz frames, ASE db row ids, OC20 shard keys, and "
        "atoms per structure. It is saved beside the data (or in the user cache directory "
        "when that is read-only) and rebuilt automatically when the data changes.",
    )
    x.add_argument("paths", nargs="+", type=Path, help="data files or OC20 shard directories")
    x.add_argument("--format", help="dataset format (default: from the path)")
    x.add_argument("--rebuild", action="store_true", help="rebuild even if the index is current")
    x.set_defaults(func=run_index)


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
    from eqv2.data.convert import convert

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


def run_index(args: argparse.Namespace) -> int:
    import time

    from eqv2.data.datasets import build_index

    for path in args.paths:
        start = time.perf_counter()
        ds = build_index(path, format=args.format, rebuild=args.rebuild)
        where = getattr(ds, "index_path", None) or "memory only (nowhere writable)"
        print(
            f"{path}: {len(ds)} structures, {int(ds.natoms.sum())} atoms; index {where} "
            f"({time.perf_counter() - start:.2f} s)"
        )
    return 0
