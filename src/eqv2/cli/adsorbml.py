"""``eqv2 adsorbml CHECKPOINT --slab SLAB --adsorbate '*OH' --out DIR``: AdsorbML screening."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eqv2.cli.model_args import add_model_arguments, load_potential
from eqv2.cli.sharded import DEFAULT_CHUNK_SIZE, session

REFERENCES = ("emt", "none")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adsorbml",
        help="find the lowest-energy adsorbate configuration (ML screening + reference check)",
        description="Place the adsorbate on every distinct site plus random positions, relax "
        "all placements with the model in batches, drop desorbed/dissociated/surface-changed/"
        "intercalated results, rank by ML energy and check the top k with the reference "
        "calculator; report success and speed-up for k = 1..top-k (docs/adsorbml.md).",
    )
    p.add_argument("checkpoint", type=Path, help="eqv2 or fairchem checkpoint (.pt)")
    p.add_argument(
        "--slab",
        type=Path,
        required=True,
        help="clean slab (tags 0/1, FixAtoms): extxyz, ASE db, OC20 LMDB or eqv2 store",
    )
    p.add_argument("--slab-index", type=int, default=0, help="which image of --slab (default 0)")
    p.add_argument(
        "--adsorbate", required=True, help="OC20 SMILES such as '*OH', an OC20 index, or a file"
    )
    p.add_argument(
        "--binding-indices", type=int, nargs="+", help="adsorbate atoms that bind (default: the "
        "OC20 entry's, else atom 0)",
    )  # fmt: skip
    p.add_argument("--placements", type=int, default=100, help="configurations (default 100)")
    p.add_argument("--top-k", type=int, default=5, help="report k = 1..TOP_K (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reference", choices=REFERENCES, default="emt",
        help="reference calculator (EMT stands in for DFT); none: ML ranking only",
    )  # fmt: skip
    p.add_argument(
        "--reference-energy", type=float,
        help="known reference minimum (total energy of the same atoms, eV): skips the baseline",
    )  # fmt: skip
    p.add_argument(
        "--reference-calls", type=int, help="reference calls the known minimum took (speed-up)"
    )
    p.add_argument(
        "--strategies", nargs="+", default=["ml+sp"], choices=["ml+sp", "ml+rx"],
        help="ml+sp: reference single points; ml+rx: reference relaxations (default ml+sp)",
    )  # fmt: skip
    p.add_argument("--fmax", type=float, default=0.05, help="ML relaxation fmax (eV/A)")
    p.add_argument("--steps", type=int, default=300, help="ML relaxation step limit")
    p.add_argument("--optimizer", choices=["lbfgs", "fire"], default="lbfgs")
    p.add_argument("--reference-fmax", type=float, default=0.05)
    p.add_argument("--reference-steps", type=int, default=300)
    p.add_argument(
        "--max-atoms", type=int, default=None, help="atom budget of a relaxation batch (1024)"
    )
    p.add_argument(
        "--initial-slab", action="store_true",
        help="check surface changes against the initial slab instead of the relaxed clean slab",
    )  # fmt: skip
    p.add_argument(
        "--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
        help="placements per unit of work of a torchrun process (the ML and reference "
        f"relaxations are split across processes; default {DEFAULT_CHUNK_SIZE})",
    )  # fmt: skip
    add_model_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Screen one adsorbate; under torchrun the relaxations are split across the processes,
    every process ranks the same results and process 0 alone writes and prints."""
    with session(args) as env:
        return _screen(args, env)


def _screen(args: argparse.Namespace, env: Any) -> int:
    from eqv2.cli.io import read_one
    from eqv2.simulate.adsorbml import (
        ase_relaxer,
        model_relaxer,
        resolve_adsorbate,
        run_adsorbml,
    )
    from eqv2.simulate.adsorbml.outputs import write_outputs
    from eqv2.simulate.adsorbml.split import split_relaxer
    from eqv2.simulate.relax import DEFAULT_MAX_ATOMS
    from eqv2.train.distributed import all_gather_objects

    slab = read_one(args.slab, args.slab_index, flag="--slab-index", what="--slab")
    adsorbate = args.adsorbate
    if adsorbate.isdigit():
        adsorbate = int(adsorbate)
    adsorbate = resolve_adsorbate(adsorbate, binding_indices=args.binding_indices)
    reference = None
    if args.reference == "emt":
        from ase.calculators.emt import EMT

        reference = EMT()
    if reference is None and args.reference_energy is not None:
        raise ValueError("--reference-energy needs a reference calculator (--reference emt)")
    if args.reference_calls is not None and args.reference_energy is None:
        raise ValueError("--reference-calls is the cost of --reference-energy; give both")
    if args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be at least 1, got {args.chunk_size}")

    def split(relax):
        return split_relaxer(
            relax, chunk_size=args.chunk_size, rank=env.rank, world_size=env.world_size,
            gather=all_gather_objects,
        )  # fmt: skip

    potential = load_potential(args)
    relax = model_relaxer(
        potential, optimizer=args.optimizer, fmax=args.fmax, steps=args.steps,
        max_atoms=args.max_atoms if args.max_atoms is not None else DEFAULT_MAX_ATOMS,
    )  # fmt: skip
    reference_relax = None
    if reference is not None:
        reference_relax = split(
            ase_relaxer(reference, fmax=args.reference_fmax, steps=args.reference_steps)
        )
    say = (lambda msg: print(msg, flush=True)) if env.is_main else None
    result = run_adsorbml(
        slab, adsorbate, split(relax), reference,
        n_placements=args.placements, seed=args.seed, top_k=args.top_k,
        strategies=tuple(args.strategies) if reference is not None else (),
        reference_energy=args.reference_energy, reference_calls=args.reference_calls,
        reference_relax=reference_relax,
        reference_fmax=args.reference_fmax, reference_steps=args.reference_steps,
        relax_clean_slab=not args.initial_slab, log=say,
    )  # fmt: skip
    if not env.is_main:
        return 0
    written = write_outputs(result, args.out)
    print()
    print(result.table())
    print(f"\nwrote {', '.join(p.name for p in written.values())} to {args.out}")
    return 0
