"""Relaxations split across processes (``torchrun``): AdsorbML's two costly stages, shared.

:func:`split_relaxer` wraps any relaxer so that the structures of one call are cut into chunks
of ``chunk_size`` consecutive structures and process ``rank`` of ``world_size`` relaxes chunks
``rank, rank + world_size, ...``; the chunks' results are then exchanged (``gather``), so every
process returns the full, ordered list and runs the rest of the screening identically. Because
the chunks, not the processes, decide which structures are relaxed together, the results do not
depend on the number of processes (one process relaxes the same chunks one after the other).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ase import Atoms

from eqv2.simulate.adsorbml.relaxers import Relaxer, RelaxOutcome

__all__ = ["split_relaxer"]


def _one_process(part: Any) -> list[Any]:
    return [part]


def split_relaxer(
    relax: Relaxer,
    *,
    chunk_size: int,
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[Any], list[Any]] = _one_process,
) -> Relaxer:
    """``relax`` run chunk by chunk, this process's share of the chunks, results shared.

    Args:
        relax: the relaxer each process runs on its chunks.
        chunk_size: structures per chunk (the unit of work, and of batching).
        rank, world_size: this process and the number of processes.
        gather: ``gather(obj)`` returns ``[obj of rank 0, obj of rank 1, ...]`` in every process
            (``eqv2.train.distributed.all_gather_objects`` under torchrun).

    Raises:
        ValueError: ``chunk_size < 1`` or a rank outside ``0..world_size - 1``.
    """
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")

    def run(structures: Sequence[Atoms]) -> list[RelaxOutcome]:
        structures = list(structures)
        starts = range(0, len(structures), chunk_size)
        mine = {
            k: list(relax(structures[s : s + chunk_size]))
            for k, s in enumerate(starts)
            if k % world_size == rank
        }
        done: dict[int, list[RelaxOutcome]] = {}
        for part in gather(mine):
            done.update(part)
        missing = [k for k in range(len(starts)) if k not in done]
        if missing:  # a process that relaxed a different list: never silently short
            raise RuntimeError(f"split relaxation: chunks {missing} came back from no process")
        return [r for k in range(len(starts)) for r in done[k]]

    return run
