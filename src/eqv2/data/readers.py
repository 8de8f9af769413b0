"""``read_structures``: one entry point that dispatches on the path to the right reader.

- a directory holding ``*.lmdb`` shards or ``data.mdb``, or a ``.lmdb``/``.mdb`` file: an eqv2
  store when it has eqv2's metadata record, otherwise an OC20 LMDB;
- ``.db`` and ``.aselmdb``: an ASE database;
- anything else: ``ase.io.read`` (extxyz, xyz, traj, OUTCAR, CIF, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from eqv2.data._common import Index
from eqv2.data.ase_db import read_ase_db
from eqv2.data.ase_readers import iter_ase
from eqv2.data.datasets import dataset_format
from eqv2.data.oc20_lmdb import iter_oc20_lmdb
from eqv2.data.records import Structure
from eqv2.data.store import read_store

__all__ = ["iter_structures", "read_structures", "detect_format"]


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"store"``, ``"oc20-lmdb"``, ``"ase-db"`` or ``"ase"`` for ``path``.

    The dataset layer's detection (:func:`eqv2.data.datasets.dataset_format`), with extxyz
    counted as ``"ase"``: these readers stream it through ``ase.io``.
    """
    fmt = dataset_format(path)
    return "ase" if fmt == "extxyz" else fmt


def iter_structures(
    path: str | os.PathLike[str],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    index: Index = ":",
    require: Iterable[str] = (),
    format: str | None = None,
) -> Iterator[Structure]:
    """Like :func:`read_structures` but yields (LMDB inputs are streamed record by record)."""
    fmt = detect_format(path)
    keys: dict[str, Any] = dict(
        energy_key=energy_key,
        forces_key=forces_key,
        stress_key=stress_key,
        index=index,
        require=tuple(require),
    )
    if fmt == "store":
        # A store's labels are already canonical, so label keys do not apply.
        yield from read_store(path, index=index, require=require)
    elif fmt == "oc20-lmdb":
        yield from iter_oc20_lmdb(path, **keys)
    elif fmt == "ase-db":
        yield from read_ase_db(path, **keys)
    else:
        yield from iter_ase(path, format=format, **keys)


def read_structures(
    path: str | os.PathLike[str],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    index: Index = ":",
    require: Iterable[str] = (),
    format: str | None = None,
) -> list[Structure]:
    """Read validated :class:`Structure` records from any supported file.

    Args:
        path: extxyz/ASE-readable file, ASE database (``.db``, ``.aselmdb``), OC20 LMDB file or
            shard directory, or an eqv2 store.
        energy_key, forces_key, stress_key: where labels live (see
            :func:`eqv2.data.records.from_atoms` for the lookup order and aliases; OC20 records
            also try ``y`` and ``force``). Ignored for eqv2 stores.
        index: which structures: an int, a slice, or ASE-style ``":"``, ``"2:10"``, ``"-1"``.
        require: labels that must be present, e.g. ``("energy", "forces")``.
        format: ``ase.io`` format name for ASE-readable files whose suffix is misleading.

    Raises:
        DataError: missing, empty, truncated or corrupt input; invalid structures (unknown
            element, NaN/inf, wrong shapes); a required label absent. Messages name the file,
            the record and the field.
    """
    return list(
        iter_structures(
            path,
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
            index=index,
            require=require,
            format=format,
        )
    )
