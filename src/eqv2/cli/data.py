"""``eqv2 data generate``, ``generate-molecules``, ``qm9``, ``convert`` and ``index``."""

from __future__ import annotations

import argparse
import sys
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

    m = dsub.add_parser(
        "generate-molecules",
        help="QM9-like CHONF molecules labelled by GFN2-xTB (needs eqv2[molecules])",
        description="Random small CHONF molecules (RDKit ETKDG conformers, MMFF94-optimised), "
        "labelled by GFN2-xTB with tblite: energy (eV), forces (eV/A), homo, lumo, gap (meV), "
        "mu and dipole (D). Writes train/val/test extxyz and metadata.json (failure counts, "
        "molecules/s). Deterministic for a seed, whatever --workers.",
    )
    m.add_argument("--out", type=Path, required=True, help="output directory")
    m.add_argument("--molecules", type=int, default=2000, help="molecules to keep")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--min-heavy-atoms", type=int, default=3)
    m.add_argument("--max-heavy-atoms", type=int, default=9)
    m.add_argument("--workers", type=int, default=1, help="processes (same output for any)")
    m.set_defaults(func=run_generate_molecules)

    q = dsub.add_parser(
        "qm9",
        help="convert schnetpack's QM9 db/extxyz to eqv2 names and units (extxyz)",
        description="Read QM9 as schnetpack stores it (ASE db with properties in row.data, "
        "or its extxyz export) and write an extxyz whose info holds the 12 targets under "
        "eqv2's names in the paper's units (mu D, alpha a0^3, homo/lumo/gap meV, r2 a0^2, "
        "zpve/u0/u/h/g meV, cv cal/mol/K). See docs/qm9.md.",
    )
    q.add_argument("input", type=Path, help="QM9 ASE database (.db) or extxyz")
    q.add_argument("-o", "--output", type=Path, required=True, help="extxyz to write")
    q.add_argument("--index", default=":", help="records to read, e.g. 0:1000 (default all)")
    q.set_defaults(func=run_qm9)

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


def run_generate_molecules(args: argparse.Namespace) -> int:
    from eqv2.data.generate.molecules import (
        MoleculeConfig,
        generate_molecules,
        summary,
        write_molecules,
    )

    config = MoleculeConfig(
        min_heavy_atoms=args.min_heavy_atoms, max_heavy_atoms=args.max_heavy_atoms
    )
    try:
        gen = generate_molecules(args.molecules, args.seed, config=config, workers=args.workers)
    except ImportError as exc:  # the optional extra is missing: say how to install it
        print(f"eqv2 data generate-molecules: error: {exc}", file=sys.stderr)
        return 2
    written = write_molecules(gen, args.out)
    print(summary(gen) + " (GFN2-xTB stands in for DFT)")
    for name, path in written.items():
        print(f"  {name:<12} {path}")
    return 0


def run_qm9(args: argparse.Namespace) -> int:
    from eqv2.data.qm9 import read_qm9, write_qm9

    mols = read_qm9(args.input, index=args.index)
    write_qm9(mols, args.output)
    print(f"wrote {len(mols)} molecules with 12 QM9 targets in eqv2 units to {args.output}")
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
