"""``eqv2 evaluate-relax``: IS2RE/IS2RS metrics of relaxations against reference relaxations.

Two modes:

* ``eqv2 evaluate-relax --predicted RELAXED REFERENCE``: score relaxed structures already made
  (e.g. by ``eqv2 relax``) against reference relaxed ones;
* ``eqv2 evaluate-relax CHECKPOINT DATA [--reference REFERENCE]``: relax DATA's initial
  structures with the model (batched, ``eqv2.simulate.relax_structures``), then score them.

DATA/REFERENCE may be the generator's ``is2re_*.extxyz`` (initial and relaxed frame per system),
initial structures with ``pos_relaxed``/``energy_relaxed``, or plain files (a pair: initial
structures as DATA, relaxed ones as ``--reference``). Every file may be in any format eqv2 reads
(extxyz or another ASE format, ASE db/aselmdb, OC20 LMDB file or shard directory, eqv2 store). An
OC20 IS2RE/IS2RS LMDB (or a store converted from one) is scored as it is: its ``pos_relaxed``
travels as a per-atom target and its ``y_relaxed`` in the record's ``info``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from eqv2.cli.io import check_output, read_atoms
from eqv2.cli.model_args import add_model_arguments, load_potential


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-relax",
        help="IS2RE/IS2RS metrics (energy MAE, EwT, ADwT) of relaxations against references",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="PATH",
        help="CHECKPOINT DATA (relax, then score), or REFERENCE alone with --predicted",
    )
    p.add_argument("--predicted", type=Path, help="relaxed structures to score (no model run)")
    p.add_argument("--reference", type=Path, help="reference relaxed structures, if not in DATA")
    p.add_argument("--out", type=Path, help="write the metrics JSON here")
    p.add_argument(
        "--fix-tags",
        type=int,
        nargs="+",
        default=[],
        metavar="TAG",
        help="atoms with these tags are fixed and not scored, e.g. 0 for OC20 subsurface atoms",
    )
    p.add_argument("--all-atoms", action="store_true", help="score fixed atoms too")
    g = p.add_argument_group("relaxation (CHECKPOINT DATA mode)")
    g.add_argument("--fmax", type=float, default=0.05, help="force convergence (eV/Å)")
    g.add_argument("--steps", type=int, default=300, help="step limit per structure")
    g.add_argument("--optimizer", choices=("lbfgs", "fire"), default="lbfgs")
    g.add_argument("--max-atoms", type=int, help="atoms per batched model call")
    add_model_arguments(g)
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _read_task(path: str | Path) -> Any:
    """A relaxation data file as a ``RelaxTask``, read with eqv2's readers (``pos_relaxed``
    arrives as ``arrays["pos_relaxed"]`` from every format)."""
    from eqv2.data import detect_format
    from eqv2.simulate.relax_evaluation import read_relax_file, split_relax_images

    if detect_format(path) == "ase":
        return read_relax_file(path)
    return split_relax_images(read_atoms(path), source=str(path))


def _predicted_mode(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from eqv2.simulate.relax_evaluation import predictions_from_images

    if len(args.inputs) != 1 or args.reference is not None:
        raise ValueError(
            "with --predicted give the reference file as the only positional argument: "
            "eqv2 evaluate-relax --predicted RELAXED.extxyz REFERENCE.extxyz"
        )
    reference = _read_task(args.inputs[0]).reference
    predictions = predictions_from_images(read_atoms(args.predicted, what="--predicted"))
    settings = {"mode": "predicted", "predicted": str(args.predicted), "reference": args.inputs[0]}
    return predictions, reference, settings


def _relax_mode(args: argparse.Namespace) -> tuple[list[Any], list[Any], dict[str, Any]]:
    from eqv2.simulate.relax_evaluation import (
        check_counts,
        check_same_atoms,
        predictions_from_results,
    )

    if len(args.inputs) != 2:
        raise ValueError(
            f"expected CHECKPOINT DATA, got {len(args.inputs)} paths; to score relaxations "
            "made already use --predicted RELAXED REFERENCE."
        )
    checkpoint, data = args.inputs
    task = _read_task(data)
    if args.reference is not None:
        initial = task.initial if task.initial is not None else task.reference
        reference = _read_task(args.reference).reference
    elif task.initial is None:
        raise ValueError(
            f"{data}: holds no initial structures (no info kind='initial' frames and no "
            "arrays pos_relaxed); pass the reference relaxed structures with --reference "
            "(then DATA's structures are relaxed), or score relaxations with --predicted."
        )
    else:
        initial, reference = task.initial, task.reference
    check_counts(len(initial), len(reference))  # before any model time is spent
    for i, (a, b) in enumerate(zip(initial, reference, strict=True)):
        check_same_atoms(i, a, b)
    from eqv2.simulate import relax_structures

    potential = load_potential(args, checkpoint)
    budget = {} if args.max_atoms is None else {"max_atoms": args.max_atoms}
    results = relax_structures(
        potential,
        initial,
        optimizer=args.optimizer,
        fmax=args.fmax,
        steps=args.steps,
        fix_tags=tuple(args.fix_tags),
        progress=not args.no_progress,
        **budget,
    )
    settings = {
        "mode": "relax",
        "checkpoint": checkpoint,
        "data": data,
        "reference": str(args.reference) if args.reference else data,
        "optimizer": args.optimizer,
        "fmax": args.fmax,
        "steps": args.steps,
        "float64": args.dtype == "float64",
    }
    return predictions_from_results(results), reference, settings


def run(args: argparse.Namespace) -> int:
    from eqv2.simulate.relax_evaluation import format_relax_metrics, score_relaxations

    if args.out is not None:
        inputs = [*args.inputs, *(p for p in (args.predicted, args.reference) if p is not None)]
        check_output(args.out, inputs, flag="--out")
    if args.predicted is not None:
        predictions, reference, settings = _predicted_mode(args)
    else:
        predictions, reference, settings = _relax_mode(args)
    metrics = score_relaxations(
        predictions, reference, fix_tags=args.fix_tags, free_only=not args.all_atoms
    )
    metrics["settings"] = {**settings, "fix_tags": args.fix_tags, "all_atoms": args.all_atoms}
    print(format_relax_metrics(metrics))
    if args.out:
        from eqv2.safe_io import write_json

        write_json(metrics, args.out)
        print(f"wrote {args.out}")
    return 0
