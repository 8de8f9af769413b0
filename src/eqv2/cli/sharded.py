"""Screening under ``torchrun``: split the inputs across ranks, merge one output in input order.

The inputs are cut into chunks of ``chunk_size`` consecutive structures; rank ``r`` of ``W``
computes chunks ``r, r + W, ...``. Each finished chunk is written atomically to a parts
directory beside the output (``.OUTPUT.parts/``), so after a crash ``--resume`` recomputes only
the chunks that are missing, with any number of processes. When all ranks are done, rank 0
merges the chunks in input order into the output and removes the parts directory. Because the
chunks, not the ranks, decide which structures are batched together, the output does not depend
on the number of processes.

Memory is O(chunk), not O(input): the input is opened as a random-access dataset
(``eqv2.data.open_dataset``) and each chunk reads only its own structures; the output is the
chunk files copied one after the other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from eqv2.cli.io import InputStructures

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "InputStructures",
    "add_sharding_arguments",
    "finish",
    "merge_chunks",
    "run_settings",
    "run_sharded",
    "screen",
    "session",
]

#: Structures per chunk: the unit of work of a rank and of ``--resume``.
DEFAULT_CHUNK_SIZE = 64


def add_sharding_arguments(parser: argparse.ArgumentParser) -> None:
    """``--resume`` and ``--chunk-size`` (the unit of work of a rank and of a resume)."""
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the chunks an interrupted run (any number of processes) finished",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=DEFAULT_CHUNK_SIZE,
        help="structures per unit of work of a torchrun rank and of --resume "
        f"({DEFAULT_CHUNK_SIZE})",
    )


#: Options that may change between a run and its --resume (they do not change the results).
_RESUMABLE = ("func", "resume", "device", "quiet", "no_progress")


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options a ``--resume`` must repeat: every option but the device and verbosity."""
    return {k: str(v) for k, v in sorted(vars(args).items()) if k not in _RESUMABLE}


@contextlib.contextmanager
def session(args: argparse.Namespace) -> Iterator[Any]:
    """Join torchrun's process group (no-op for one process); ``args.device`` becomes this
    rank's device (``cuda`` means ``cuda:LOCAL_RANK``). Yields the ``DistributedEnv``."""
    import torch

    from eqv2.train.distributed import DistributedEnv, distributed_session, resolve_device

    env = DistributedEnv.from_environ()
    device = resolve_device(args.device, env) if env.world_size > 1 else torch.device(args.device)
    args.device = str(device)
    with distributed_session(device) as current:
        yield current


def _parts_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


def _chunk_path(parts: Path, k: int) -> Path:
    return parts / f"chunk-{k:07d}.extxyz"


def _prepare(parts: Path, manifest: dict[str, Any], resume: bool) -> None:
    """(Rank 0) start a fresh parts directory, or check that the one to resume matches."""
    path = parts / "manifest.json"
    if resume and path.is_file():
        previous = json.loads(path.read_text())
        if previous != manifest:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            raise ValueError(
                f"--resume: the unfinished run in {parts} had different {', '.join(changed)} "
                f"({', '.join(f'{k}={previous.get(k)!r}' for k in changed)}); run with the same "
                "input and options, or without --resume to start over."
            )
        return
    if parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True)
    from eqv2.safe_io import write_json

    write_json(manifest, path)


def run_sharded(
    compute: Callable[[Sequence[int]], list[Any]],
    n: int,
    output: Path,
    *,
    settings: dict[str, Any],
    resume: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> list[Any] | None:
    """Compute ``n`` structures in chunks across the ranks of the current process group.

    Args:
        compute: ``compute(indices)`` returns the finished ``ase.Atoms`` of those input indices,
            in that order.
        n: number of input structures.
        output: the final output file (the parts directory goes beside it).
        settings: what must not change between a run and its ``--resume`` (input, options).
        resume: keep the chunks an earlier, interrupted run finished.
        chunk_size: structures per chunk.

    Returns:
        On rank 0 the chunk files (extxyz), whose frames in this order are every structure in
        input order; None on the other ranks.
    """
    from ase.io import write

    from eqv2.safe_io import atomic_write_path
    from eqv2.train.distributed import DistributedEnv, all_gather_objects, barrier

    if chunk_size < 1:
        raise ValueError(f"--chunk-size {chunk_size}: must be at least 1.")
    env = DistributedEnv.current()
    parts = _parts_dir(output)
    manifest = {**settings, "n_structures": n, "chunk_size": chunk_size}
    error = None
    if env.is_main:
        try:
            _prepare(parts, manifest, resume)
        except ValueError as exc:
            error = str(exc)
    errors = [e for e in all_gather_objects(error) if e is not None]
    if errors:
        raise ValueError(errors[0])
    n_chunks = (n + chunk_size - 1) // chunk_size
    for k in range(env.rank, n_chunks, env.world_size):
        path = _chunk_path(parts, k)
        if path.is_file():
            continue  # finished by an earlier run (--resume)
        indices = range(k * chunk_size, min((k + 1) * chunk_size, n))
        done = compute(indices)
        with atomic_write_path(path) as tmp:
            write(tmp, done, format="extxyz")
    barrier()
    if not env.is_main:
        return None
    return [_chunk_path(parts, k) for k in range(n_chunks)]


def merge_chunks(chunks: Sequence[Path], output: Path, tally: Callable[[Any], None]) -> int:
    """Write the chunk files one after the other to ``output`` (atomically); ``tally`` sees
    each structure, one chunk in memory at a time. Returns the number of structures."""
    from ase.io import read

    from eqv2.safe_io import atomic_write_path

    count = 0
    with atomic_write_path(output) as tmp, open(tmp, "wb") as out:
        for path in chunks:
            for atoms in read(path, ":", format="extxyz"):
                tally(atoms)
                count += 1
            with open(path, "rb") as part:
                shutil.copyfileobj(part, out)
    return count


def finish(output: Path) -> None:
    """(Rank 0, after the output is written) remove the parts directory."""
    shutil.rmtree(_parts_dir(output), ignore_errors=True)


def screen(
    args: argparse.Namespace,
    compute_chunk: Callable[[Any, Sequence[Any], Sequence[int], argparse.Namespace], list[Any]],
    tally: Callable[[Any], None],
) -> tuple[Path, int | None]:
    """The common run of ``predict`` and ``relax``: check the output, open the input, load the
    model on this rank's device, compute the chunks across the ranks and (rank 0) write the
    merged output atomically.

    ``compute_chunk(potential, structures, indices, args)`` returns the finished structures
    (``structures``: an `InputStructures`); ``tally`` sees each finished structure once, in
    input order, on rank 0. Returns the output path and the number of structures written
    (None on ranks other than 0).
    """
    from eqv2.cli.io import check_output
    from eqv2.cli.model_args import load_potential

    output = check_output(args.output, [args.input])
    structures = InputStructures(args.input)
    with session(args):
        potential = load_potential(args)
        chunks = run_sharded(
            lambda indices: compute_chunk(potential, structures, indices, args),
            len(structures),
            output,
            settings=run_settings(args),
            resume=args.resume,
            chunk_size=args.chunk_size,
        )
    if chunks is None:
        return output, None
    count = merge_chunks(chunks, output, tally)
    finish(output)
    return output, count
