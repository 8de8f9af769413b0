"""The error raised for bad structure data, shared by the record type and the data readers.

It lives in the graph layer because :class:`eqv2.graph.structure.Structure` validates itself
with it; ``eqv2.data.errors`` re-exports it with the reader-specific subclasses.
"""

from __future__ import annotations

__all__ = ["DataError", "where"]


class DataError(ValueError):
    """Bad or unreadable input data (a ``ValueError``, so callers may catch either)."""


def where(source: object, record: object = None) -> str:
    """``"train.extxyz, structure 12"``: the prefix used by every message about one record."""
    if record is None:
        return str(source)
    if isinstance(record, bytes):
        return f"{source}, record key {record!r}"
    return f"{source}, structure {record}"
