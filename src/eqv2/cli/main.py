"""Entry point of the ``eqv2`` console script and ``python -m eqv2``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from eqv2.allocator import tune_allocator
from eqv2.cli import adsorbml, data, demo, evaluate_relax, md, predict, relax, train
from eqv2.cli.messages import cli_message

#: Commands that split their work across torchrun's processes (the others would each do all of
#: it and write the same files).
TORCHRUN_COMMANDS = ("train", "predict", "relax", "adsorbml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eqv2",
        description="EquiformerV2: train, evaluate and predict; load fairchem checkpoints.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_parser(sub)
    train.add_parsers(sub)
    predict.add_parser(sub)
    data.add_parsers(sub)
    relax.add_parser(sub)
    evaluate_relax.add_parser(sub)
    md.add_parser(sub)
    adsorbml.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_allocator()  # CPU runs churn through large temporaries: reuse freed memory
    world = os.environ.get("WORLD_SIZE", "1")
    if args.command not in TORCHRUN_COMMANDS and world.isdigit() and int(world) > 1:
        print(
            f"eqv2 {args.command}: error: started as one of {world} torchrun processes, but "
            f"'eqv2 {args.command}' does not split its work across processes (each would do "
            f"all of it and write the same files). Run it as one process, without torchrun; "
            f"under torchrun: eqv2 {', '.join(TORCHRUN_COMMANDS)}.",
            file=sys.stderr,
        )
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"eqv2 {args.command}: error: {cli_message(str(exc), args.command)}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # the commands name the structures and the option to lower
        print(f"eqv2 {args.command}: error: {exc}", file=sys.stderr)
        return 1
