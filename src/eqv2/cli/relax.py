"""``eqv2 relax CHECKPOINT INPUT -o OUTPUT``: relax every structure with a checkpoint, batched.

The output extxyz holds every input structure in input order: relaxed positions, energy and raw
forces, its ``info`` kept, plus ``converged`` and ``relax_steps``; a structure stopped by an error
keeps its last positions and gets ``relax_error`` instead of energy and forces. With ``--cell``
the cells relax too (ASE's ``FrechetCellFilter`` degrees of freedom, optionally under
``--pressure`` in GPa, ``--hydrostatic`` or ``--constant-volume``) and the output keeps the
relaxed cells and the final stress. The file is
written atomically once all structures are done, so it is never half-written.

Under ``torchrun --nproc_per_node N -m eqv2 relax ...`` the structures are split across the
processes in chunks and one output is merged in input order (the same file as one process);
``--resume`` keeps the chunks an interrupted run finished (``eqv2.cli.sharded``).

Exit status: 0 when every structure relaxed without error (converged or stopped at the step
limit); 1 when any structure failed (the output is still complete, the failed ones carry
``relax_error``, and a last line on stderr names their input indices); 2 when the input cannot
be read or an argument is invalid (nothing is written).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eqv2.cli.io import add_input_argument
from eqv2.cli.model_args import add_model_arguments
from eqv2.cli.sharded import add_sharding_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "relax",
        help="relax structures with a checkpoint (batched LBFGS or FIRE)",
        description=(
            "Relax every structure of INPUT with the model, many at once, and write them to "
            "OUTPUT (extxyz) in input order. Exit status 0 if every structure relaxed "
            "without error (converged or not), 1 if any failed (named on stderr; the output "
            "is complete), 2 if the input is unusable."
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
    add_sharding_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=run)


def _relax_chunk(
    potential: Any, structures: Sequence[Any], indices: Sequence[int], args: argparse.Namespace
) -> list[Any]:
    """The relaxed ``structures[indices]`` (errors and trajectories named by input index)."""
    from eqv2.cli.memory import oom_errors, out_of_memory
    from eqv2.simulate.relax import DEFAULT_MAX_ATOMS, relax_structures
    from eqv2.simulate.relax.trajectory import trajectory_path, write_trajectory

    chunk = [structures[i] for i in indices]
    max_atoms = args.max_atoms if args.max_atoms is not None else DEFAULT_MAX_ATOMS
    try:
        results = relax_structures(
            potential,
            chunk,
            optimizer=args.optimizer,
            fmax=args.fmax,
            steps=args.steps,
            max_atoms=max_atoms,
            max_edges=args.max_edges,
            fix_tags=args.fix_tags,
            keep_trajectory=args.trajectory_dir is not None,
            progress=not args.quiet,
            cell=cell_filter(args),
        )
    except oom_errors() as exc:
        edges = "" if args.max_edges is None else f" and {args.max_edges} edges (--max-edges)"
        raise out_of_memory(
            exc,
            f"relaxing structures {indices[0]}..{indices[-1]} with up to {max_atoms} atoms "
            f"(--max-atoms){edges} in the running batch",
            structures,
            indices,
            f"lower --max-atoms (e.g. {max(max_atoms // 2, 1)}) or --max-edges",
        ) from exc
    for index, r in zip(indices, results, strict=True):
        if r.error is not None:  # the engine counted from the chunk's start
            error = re.sub(rf"^Structure {r.index}\b", f"Structure {index}", r.error)
            r.atoms.info["relax_error"] = error
        if args.trajectory_dir is not None and r.trajectory:
            write_trajectory(trajectory_path(args.trajectory_dir, index), r.trajectory)
    return [r.atoms for r in results]


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


@dataclass
class RelaxTally:
    """Outcome counts of the relaxed structures, seen one at a time in input order."""

    seen: int = 0
    converged: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, atoms: Any) -> None:
        if "relax_error" in atoms.info:
            self.failed.append((self.seen, atoms.info["relax_error"]))
        elif atoms.info.get("converged"):
            self.converged += 1
        self.seen += 1

    @property
    def unconverged(self) -> int:
        return self.seen - self.converged - len(self.failed)


def run(args: argparse.Namespace) -> int:
    from eqv2.cli.sharded import screen

    cell_filter(args)  # refuse inconsistent cell options before any work
    tally = RelaxTally()
    output, count = screen(args, _relax_chunk, tally)
    if count is None:  # a torchrun rank other than 0: rank 0 writes and reports
        return 0
    print(
        f"relaxed {count} structures: {tally.converged} converged, {tally.unconverged} not "
        f"converged within {args.steps} steps, {len(tally.failed)} failed"
    )
    for _, error in tally.failed:
        print(f"  failed: {error}")
    print(f"wrote {output}")
    if tally.failed:
        indices = ", ".join(str(i) for i, _ in tally.failed)
        print(
            f"eqv2 relax: {len(tally.failed)} of {count} structures failed (input indices "
            f"{indices}); they keep their last positions and a relax_error in {output}.",
            file=sys.stderr,
        )
        return 1
    return 0
