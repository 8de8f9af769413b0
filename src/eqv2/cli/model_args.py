"""The model options every command that runs a checkpoint shares, and loading from them.

One set of flags for ``predict``, ``relax``, ``evaluate-relax``, ``md`` and ``adsorbml``:
``--device``, ``--dtype float32|float64`` (``--float64`` is short for ``--dtype float64``),
``--use-ema`` and ``--trust-pickle``.
"""

from __future__ import annotations

import argparse
from typing import Any

DTYPES = ("float32", "float64")


def add_model_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """Add ``--device``, ``--dtype``, ``--float64``, ``--use-ema`` and ``--trust-pickle`` to a
    parser or group."""
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (cpu)")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="model precision (float32)"
    )
    parser.add_argument(
        "--float64", dest="dtype", action="store_const", const="float64",
        help="same as --dtype float64",
    )  # fmt: skip
    parser.add_argument(
        "--use-ema",
        action="store_true",
        help="use the EMA weights of a fairchem file or an eqv2 checkpoint.pt",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load a checkpoint that needs full unpickling (can run code from the file: only "
        "for files whose origin you trust)",
    )


def load_potential(args: argparse.Namespace, checkpoint: Any = None) -> Any:
    """`eqv2.load_model` of ``checkpoint`` (default ``args.checkpoint``) with the model options."""
    import torch

    from eqv2.model.loading import load_model

    return load_model(
        args.checkpoint if checkpoint is None else checkpoint,
        dtype=getattr(torch, args.dtype),
        device=args.device,
        use_ema=args.use_ema,
        trust_pickle=getattr(args, "trust_pickle", False),
    )
