"""eqv2.data: reading DFT datasets into :class:`Structure` records, eqv2 stores, splits.

Layer 5 of eqv2: imports ``eqv2.graph`` (edge counts for stores) but never the model.
"""

from eqv2.data.errors import DataError, MissingFileError, UnsafePickleError
from eqv2.data.readers import detect_format, iter_structures, read_structures
from eqv2.data.records import Structure, from_atoms, to_atoms
from eqv2.data.splits import split_indices
from eqv2.data.store import StoreDataset, convert, open_store, write_store

__all__ = [
    "DataError",
    "MissingFileError",
    "Structure",
    "StoreDataset",
    "UnsafePickleError",
    "convert",
    "detect_format",
    "from_atoms",
    "iter_structures",
    "open_store",
    "read_structures",
    "split_indices",
    "to_atoms",
    "write_store",
]
