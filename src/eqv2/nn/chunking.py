"""Edge chunking: process a large graph's edges a slice at a time within a memory budget.

Edge-sized tensors dominate EquiformerV2's memory: an attention layer of the 31M model holds
~90 KB of intermediates per edge (messages of 2C channels per coefficient, radial weights, SO(2)
convolution outputs), so a 10,000-atom structure (~200,000 edges) needs tens of GB at once. The
layers that loop over edges (attention, force head, edge-degree embedding) instead take edges in
chunks sized by :class:`EdgeChunking`, sum each chunk into the nodes and free it. When autograd
is recording (forces or stress as derivatives, training) each chunk is recomputed in backward
(:func:`run_chunk`) so no chunk's intermediates stay alive between forward and backward.

Chunks cut only the edge axis, so every edge's arithmetic is the one of the unchunked path; the
results differ only by the order of the per-node sums (float round-off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch.utils.checkpoint import checkpoint

T = TypeVar("T")

#: Default working memory of one chunk: 1 GiB. The 31M model's 269-atom OC20 batch (5,380
#: edges, ~0.5 GB per attention layer) stays unchunked; a 10,000-atom slab gets ~11,000-edge chunks.
DEFAULT_BUDGET_BYTES = 1 << 30


@dataclass(frozen=True)
class EdgeChunking:
    """How many edges a layer processes at once.

    Args:
        budget_bytes: working memory allowed for one chunk's edge intermediates; the chunk size
            is ``budget_bytes // bytes_per_edge`` of the layer (its own estimate).
        max_edges: a fixed chunk size in edges instead of the budget (None: use the budget).

    ``EdgeChunking()`` is the automatic default; ``EdgeChunking.off()`` never chunks;
    ``EdgeChunking(max_edges=4096)`` forces 4,096-edge chunks.
    """

    budget_bytes: int = DEFAULT_BUDGET_BYTES
    max_edges: int | None = None

    def __post_init__(self) -> None:
        if self.budget_bytes < 1:
            raise ValueError(
                f"EdgeChunking(budget_bytes={self.budget_bytes}): the budget must be a positive "
                "number of bytes (use EdgeChunking.off() to disable chunking)."
            )
        if self.max_edges is not None and self.max_edges < 1:
            raise ValueError(
                f"EdgeChunking(max_edges={self.max_edges}): a chunk needs at least one edge; "
                "pass None to size chunks from budget_bytes."
            )

    @classmethod
    def off(cls) -> EdgeChunking:
        """Never chunk: every layer processes all edges at once."""
        return cls(budget_bytes=1 << 62)

    def chunk_size(self, bytes_per_edge: int) -> int:
        """Edges per chunk (≥ 1) for a layer whose edges need ``bytes_per_edge`` each."""
        if self.max_edges is not None:
            return self.max_edges
        return max(1, self.budget_bytes // max(1, bytes_per_edge))


#: The automatic policy (``DEFAULT_BUDGET_BYTES`` per chunk).
AUTOMATIC = EdgeChunking()


def chunk_bounds(num_edges: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of at most ``size`` edges covering ``num_edges``."""
    for start in range(0, num_edges, size):
        yield start, min(start + size, num_edges)


def run_chunk(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)``, recomputed in backward instead of keeping its intermediates when autograd
    records. ``fn`` must be deterministic (no dropout inside): it runs twice."""
    if torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False, preserve_rng_state=False)
    return fn(*args)
