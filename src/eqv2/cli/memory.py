"""Out-of-memory errors a user can act on: what was running, its largest structure, what to lower.

Commands catch ``torch.OutOfMemoryError`` (device) and ``MemoryError`` (host) at the boundary
with the library and re-raise :func:`out_of_memory`; ``eqv2.cli.main`` prints it (exit status 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["oom_errors", "out_of_memory"]


def oom_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean out of memory: ``torch.OutOfMemoryError``, ``MemoryError``."""
    import torch

    return (torch.OutOfMemoryError, MemoryError)


def out_of_memory(
    exc: BaseException, doing: str, structures: Sequence[Any], indices: Sequence[int], fix: str
) -> MemoryError:
    """A ``MemoryError`` saying ``doing`` ran out of memory, naming the largest of the
    ``structures[indices]`` involved and the ``fix`` (the options to lower)."""
    from eqv2.graph import structure_label

    largest = max(indices, key=lambda i: len(structures[i]))
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return MemoryError(
        f"out of memory {doing}; the largest structure is "
        f"{structure_label(largest, structures[largest], formula=True)} with "
        f"{len(structures[largest])} atoms. Fix: {fix}, or run on a device with more memory. "
        f"({type(exc).__name__}: {detail})"
    )
