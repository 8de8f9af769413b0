"""``convert``: read any supported input and write an eqv2 store (``eqv2 data convert``).

It sits above both the readers and the store writer, so neither imports the other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from eqv2.data.errors import DataError
from eqv2.data.readers import iter_structures
from eqv2.data.records import Structure
from eqv2.data.store import StoreDataset, open_store, write_store

__all__ = ["convert"]


def convert(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    cutoff: float | None = None,
    max_neighbors: int | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    **reader_kwargs: Any,
) -> StoreDataset:
    """Read ``inputs`` (one path or several) with :func:`read_structures` and write a store.

    ``reader_kwargs`` (``energy_key``, ``forces_key``, ``stress_key``, ``index``, ``require``)
    go to the reader; ``require`` is also enforced when writing. The input paths and reader
    keys are recorded in the metadata. Returns the opened store.
    """

    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise DataError("convert: no input paths given.")
    require = tuple(reader_kwargs.get("require", ()))

    def stream() -> Iterable[Structure]:
        for p in paths:
            yield from iter_structures(p, **reader_kwargs)

    meta = {
        "inputs": [str(p) for p in paths],
        "reader": {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in reader_kwargs.items()
            if isinstance(v, (str, int, float, tuple, list))
        },
        **(metadata or {}),
    }
    write_store(
        stream(),
        output,
        metadata=meta,
        cutoff=cutoff,
        max_neighbors=max_neighbors,
        require=require,
        overwrite=overwrite,
    )
    return open_store(output)
