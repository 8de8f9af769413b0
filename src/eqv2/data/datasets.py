"""``open_dataset``: one random-access dataset interface for every supported format.

Formats (``format=`` or detected from the path):

- ``"extxyz"``: ``.xyz``/``.extxyz`` files, indexed by byte offset (:mod:`eqv2.data.extxyz`);
- ``"ase-db"``: ASE SQLite ``.db`` and LMDB-backed ``.aselmdb`` databases (row ids);
- ``"oc20-lmdb"``: an OC20 LMDB file or a directory of ``*.lmdb`` shards (shard and key);
- ``"store"``: an eqv2 store (``eqv2 data convert``), which is its own index;
- any other file is read with ``ase.io`` (``format`` may name an ``ase.io`` format) into a
  :class:`ListDataset` in memory: these formats (CIF, OUTCAR, traj, ...) have no cheap index.

Index files are built on first open (or by ``eqv2 data index PATH``) and reused while the data
files keep their size and modification time (:mod:`eqv2.data.index`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from eqv2.data._common import check_path
from eqv2.data.ase_db import AseDbDataset
from eqv2.data.dataset import Dataset, LabelKeys, ListDataset, RecordDataset
from eqv2.data.errors import DataError
from eqv2.data.extxyz import ExtxyzDataset
from eqv2.data.oc20_lmdb import OC20LmdbDataset
from eqv2.data.store import StoreDataset, is_store

__all__ = ["DATASET_FORMATS", "dataset_format", "open_dataset"]

_INDEXED: dict[str, type[RecordDataset]] = {
    "extxyz": ExtxyzDataset,
    "ase-db": AseDbDataset,
    "oc20-lmdb": OC20LmdbDataset,
}
#: Formats with random access from an index (``"ase"`` means: read into memory with ase.io).
DATASET_FORMATS = ("extxyz", "ase-db", "oc20-lmdb", "store")


def dataset_format(path: str | os.PathLike[str]) -> str:
    """The dataset format of ``path`` (one of :data:`DATASET_FORMATS`, or ``"ase"``)."""
    p = check_path(path)
    if p.is_dir():
        return "oc20-lmdb"
    suffix = p.suffix.lower()
    if suffix in (".lmdb", ".mdb"):
        return "store" if is_store(p) else "oc20-lmdb"
    if suffix in (".db", ".aselmdb"):
        return "ase-db"
    if suffix in (".xyz", ".extxyz"):
        return "extxyz"
    return "ase"


def open_dataset(
    path: str | os.PathLike[str],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    require: Iterable[str] = (),
    format: str | None = None,
    rebuild_index: bool = False,
) -> Dataset:
    """Open ``path`` as a random-access dataset of :class:`~eqv2.data.Structure` records.

    Args:
        path: a file or shard directory in one of the formats in the module docstring.
        energy_key, forces_key, stress_key: where labels live (see ``eqv2.data.from_atoms``;
            OC20 records also try ``y`` and ``force``). Ignored for eqv2 stores.
        require: labels every record must have (e.g. ``("energy", "forces")``); a record
            without one raises :class:`DataError` naming it and the field when it is read.
        format: one of :data:`DATASET_FORMATS` to override detection, or an ``ase.io`` format
            name (the file is then read into memory).
        rebuild_index: rebuild the index even when a current one exists.

    Returns:
        A dataset with ``len``, ``[i] -> Structure``, ``natoms`` and ``nedges``; picklable,
        and safe to use in forked or spawned worker processes.

    Raises:
        DataError: missing, empty, truncated or corrupt input (naming the file and record).
    """
    p = check_path(path)
    fmt = format or dataset_format(p)
    require = tuple(require)
    if fmt == "store":
        return StoreDataset(p, require)
    keys = LabelKeys(energy_key, forces_key, stress_key)
    if fmt in _INDEXED:
        return _INDEXED[fmt](p, keys, require, rebuild_index)
    if p.is_dir():
        raise DataError(f"{p}: a directory can only be read as OC20 LMDB shards (format {fmt!r}).")
    from eqv2.data.ase_readers import read_ase

    structures = read_ase(
        p,
        energy_key=energy_key,
        forces_key=forces_key,
        stress_key=stress_key,
        require=require,
        format=None if fmt == "ase" else fmt,
    )
    return ListDataset(structures)


def build_index(
    path: str | os.PathLike[str], format: str | None = None, rebuild: bool = False
) -> Dataset:
    """Open ``path`` so that its index is built (or rebuilt) and saved; return the dataset."""
    return open_dataset(path, format=format, rebuild_index=rebuild)
