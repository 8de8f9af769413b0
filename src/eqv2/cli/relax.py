"""``eqv2 relax CHECKPOINT INPUT -o OUTPUT``: relax every structure with a checkpoint, batched.

The output extxyz holds every input structure in input order: relaxed positions, energy and raw
forces, its ``info`` kept, plus ``converged`` and ``relax_steps``; a structure stopped by an error
keeps its last positions and gets ``relax_error`` instead of energy and forces. The file is
written atomically once all structures are done, so it is never half-written.

Exit status: 0 when at least one structure relaxed without error (converged or not), 1 when
every structure failed (the output is still written, with the errors), 2 when the input cannot
be read or an argument is invalid (nothing is written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eqv2.cli.io import add_input_argument, check_output, read_atoms
from eqv2.cli.model_args import add_model_arguments, load_potential


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relax",
        help="relax structures with a checkpoint (batched LBFGS or FIRE)",
        description=(
            "Relax every structure of INPUT with the model, many at once, and write them to "
            "OUTPUT (extxyz) in input order. Exit status 0 if at least one structure relaxed "
            "without error, 1 if all failed, 2 if the input is unusable."
        ),
    )
    p.add_argument("checkpoint", type=Path, help="eqv2 or fairchem checkpoint (.pt)")
    add_input_argument(p)
    p.add_argument("-o", "--output", required=True, help="output .extxyz")
    p.add_argument("--fmax", type=float, default=0.05, help="force threshold, eV/Å (0.05)")
    p.add_argument("--steps", type=int, default=300, help="optimiser step limit (300)")
    p.add_argument("--optimizer", choices=("lbfgs", "fire"), default="lbfgs")
    p.add_argument(
        "--max-atoms", type=int, default=None, help="atom budget of the running batch (1024)"
    )
    p.add_argument("--max-edges", type=int, default=None, help="edge budget (default: none)")
    p.add_argument(
        "--fix-tags",
        type=int,
        nargs="+",
        default=[],
        metavar="TAG",
        help="fix atoms with these tags, e.g. 0 for OC20 subsurface atoms",
    )
    p.add_argument("--trajectory-dir", type=Path, help="write relax_<index>.extxyz per structure")
    add_model_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ase.io import write

    from eqv2.atomic import atomic_write_path
    from eqv2.cli.memory import oom_errors, out_of_memory
    from eqv2.simulate.relax import DEFAULT_MAX_ATOMS, relax_structures

    output = check_output(args.output, [args.input])
    structures = read_atoms(args.input)
    potential = load_potential(args)
    max_atoms = args.max_atoms if args.max_atoms is not None else DEFAULT_MAX_ATOMS
    try:
        results = relax_structures(
            potential,
            structures,
            optimizer=args.optimizer,
            fmax=args.fmax,
            steps=args.steps,
            max_atoms=max_atoms,
            max_edges=args.max_edges,
            fix_tags=args.fix_tags,
            trajectory_dir=args.trajectory_dir,
            progress=not args.quiet,
        )
    except oom_errors() as exc:
        edges = "" if args.max_edges is None else f" and {args.max_edges} edges (--max-edges)"
        raise out_of_memory(
            exc,
            f"relaxing {len(structures)} structures with up to {max_atoms} atoms (--max-atoms)"
            f"{edges} in the running batch",
            structures,
            range(len(structures)),
            f"lower --max-atoms (e.g. {max(max_atoms // 2, 1)}) or --max-edges",
        ) from exc
    with atomic_write_path(output) as tmp:
        write(tmp, [r.atoms for r in results], format="extxyz")

    failed = [r for r in results if r.error is not None]
    converged = sum(r.converged for r in results)
    unconverged = len(results) - converged - len(failed)
    print(
        f"relaxed {len(results)} structures: {converged} converged, {unconverged} not converged "
        f"within {args.steps} steps, {len(failed)} failed"
    )
    for r in failed:
        print(f"  failed: {r.error}")
    print(f"wrote {output}")
    return 1 if len(failed) == len(results) else 0
