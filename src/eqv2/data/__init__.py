"""eqv2.data: reading DFT datasets into :class:`Structure` records, datasets, stores, splits.

Layer 5 of eqv2: imports ``eqv2.graph`` (the record type, edge counts for stores) but never the
model. ``open_dataset`` is the random-access entry point for every format; ``read_structures``
reads a whole (or sliced) file into a list.
"""

from eqv2.data.convert import convert
from eqv2.data.dataset import Dataset, LabelKeys, ListDataset, RecordDataset
from eqv2.data.datasets import DATASET_FORMATS, build_index, dataset_format, open_dataset
from eqv2.data.errors import DataError, MissingFileError, UnsafePickleError
from eqv2.data.readers import detect_format, iter_structures, read_structures
from eqv2.data.records import Structure, from_atoms, to_atoms
from eqv2.data.splits import split_indices
from eqv2.data.store import StoreDataset, open_store, write_store

__all__ = [
    "DATASET_FORMATS",
    "DataError",
    "Dataset",
    "LabelKeys",
    "ListDataset",
    "MissingFileError",
    "RecordDataset",
    "Structure",
    "StoreDataset",
    "UnsafePickleError",
    "build_index",
    "convert",
    "dataset_format",
    "detect_format",
    "from_atoms",
    "iter_structures",
    "open_dataset",
    "open_store",
    "read_structures",
    "split_indices",
    "to_atoms",
    "write_store",
]
