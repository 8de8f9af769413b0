"""``eqv2 relax CHECKPOINT INPUT -o OUTPUT``: relax every structure with a checkpoint, batched.

The output extxyz holds every input structure in input order: relaxed positions, energy and raw
forces, its ``info`` kept, plus ``converged`` and ``relax_steps``; a structure stopped by an error
keeps its last positions and gets ``relax_error`` instead of energy and forces. With ``--cell``
the cells relax too (ASE's ``FrechetCellFilter`` degrees of freedom, optionally under
``--pressure`` in GPa, ``--hydrostatic`` or ``--constant-volume``) and the output keeps the
relaxed cells and the final stress. The file is
written atomically once all structures are done, so it is never half-written.

Exit status: 0 when at least one structure relaxed without error (converged or not), 1 when
every structure failed (the output is still written, with the errors), 2 when the input cannot
be read or an argument is invalid (nothing is written).
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    p.add_argument("input", type=Path, help="structures readable by ASE (extxyz, traj, db, ...)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .extxyz")
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
    cell = p.add_argument_group("variable cell (periodic structures)")
    cell.add_argument(
        "--cell", action="store_true", help="relax the cells too (ASE's FrechetCellFilter DOF)"
    )
    cell.add_argument(
        "--pressure",
        type=float,
        default=0.0,
        metavar="GPA",
        help="external pressure in GPa (0); the relaxed stress approaches -pressure",
    )
    cell.add_argument(
        "--hydrostatic", action="store_true", help="only scale the cells (shape kept)"
    )
    cell.add_argument(
        "--constant-volume", action="store_true", help="keep the cell volumes (shape relaxes)"
    )
    add_model_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def _read(path: Path) -> list:
    from ase.io import read

    if not path.is_file():
        raise FileNotFoundError(f"input file {path} not found.")
    try:
        structures = read(path, ":")
    except Exception as exc:  # ASE raises many types for unreadable files
        raise ValueError(
            f"could not read structures from {path}: {exc}. Give a file ASE can read "
            "(extxyz, traj, ASE db, ...)."
        ) from exc
    if not structures:
        raise ValueError(f"{path} holds no structures.")
    return structures


def cell_filter(args: argparse.Namespace):
    """The ``CellFilter`` the cell options ask for, or None without ``--cell``."""
    from ase.units import GPa

    from eqv2.simulate.relax import CellFilter

    if not args.cell:
        given = [
            name
            for name, value in (
                ("--pressure", args.pressure != 0.0),
                ("--hydrostatic", args.hydrostatic),
                ("--constant-volume", args.constant_volume),
            )
            if value
        ]
        if given:
            raise ValueError(f"{', '.join(given)} only apply to a cell relaxation; add --cell.")
        return None
    return CellFilter(
        pressure=args.pressure * GPa,
        hydrostatic_strain=args.hydrostatic,
        constant_volume=args.constant_volume,
    )


def run(args: argparse.Namespace) -> int:
    from ase.io import write

    from eqv2.atomic import atomic_write_path
    from eqv2.simulate.relax import DEFAULT_MAX_ATOMS, relax_structures

    cell = cell_filter(args)
    structures = _read(args.input)
    potential = load_potential(args)
    results = relax_structures(
        potential,
        structures,
        optimizer=args.optimizer,
        fmax=args.fmax,
        steps=args.steps,
        max_atoms=args.max_atoms if args.max_atoms is not None else DEFAULT_MAX_ATOMS,
        max_edges=args.max_edges,
        fix_tags=args.fix_tags,
        trajectory_dir=args.trajectory_dir,
        progress=not args.quiet,
        cell=cell,
    )
    with atomic_write_path(args.output) as tmp:
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
    print(f"wrote {args.output}")
    return 1 if len(failed) == len(results) else 0
