"""Errors raised by the eqv2 data readers and writers.

Every message names the file, the record (index or LMDB key) and the field at fault, and says how
to fix it, so a user can act on it without reading eqv2's source.
"""

from __future__ import annotations

__all__ = ["DataError", "MissingFileError", "UnsafePickleError", "where"]


class DataError(ValueError):
    """Bad or unreadable input data (a ``ValueError``, so callers may catch either)."""


class MissingFileError(DataError, FileNotFoundError):
    """The input path does not exist (also a ``FileNotFoundError``)."""


class UnsafePickleError(DataError):
    """A pickled record referenced a global outside the restricted unpickler's allow-list."""


def where(source: object, record: object = None) -> str:
    """``"train.extxyz, structure 12"``: the prefix used by every message about one record."""
    if record is None:
        return str(source)
    if isinstance(record, bytes):
        return f"{source}, record key {record!r}"
    return f"{source}, structure {record}"
