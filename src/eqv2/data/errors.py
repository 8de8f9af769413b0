"""Errors raised by the eqv2 data readers and writers.

Every message names the file, the record (index or LMDB key) and the field at fault, and says how
to fix it, so a user can act on it without reading eqv2's source. :class:`DataError` itself is
defined next to the record type (``eqv2.graph.errors``) and re-exported here.
"""

from __future__ import annotations

from eqv2.graph.errors import DataError, where

__all__ = ["DataError", "MissingFileError", "UnsafePickleError", "where"]


class MissingFileError(DataError, FileNotFoundError):
    """The input path does not exist (also a ``FileNotFoundError``)."""


class UnsafePickleError(DataError):
    """A pickled record referenced a global outside the restricted unpickler's allow-list."""
