"""ASE databases: SQLite ``.db`` files and fairchem's LMDB-backed ``.aselmdb``.

:class:`AseDbDataset` gives random access through an index of row ids (in id order) and atom
counts. For SQLite they come from one query of the ``systems`` table (no row is decoded).

``.aselmdb`` files are read by eqv2 itself, without the ase-db-backends package: such a file
is an LMDB whose keys are row ids (``b"1"``, ``b"2"``, ...) plus ``nextid``, ``deleted_ids``
and ``metadata``; each value is zlib-compressed JSON in ASE's ``ase.io.jsonio`` encoding of the
row's dict. Row ids are ``1 .. nextid-1`` minus the deleted ones; atom counts need each row
decoded once, when the index is built. Reading through eqv2's shared LMDB handles also lets a
dataset and ``read_structures`` read the same file in one process (py-lmdb refuses to open a
file twice).
"""

from __future__ import annotations

import os
import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from eqv2.data._common import (
    Index,
    check_path,
    close_lmdb,
    lmdb_error,
    lmdb_errors,
    open_lmdb,
    select,
    warn_unreadable,
)
from eqv2.data.dataset import LabelKeys, RecordDataset
from eqv2.data.errors import DataError, where
from eqv2.data.records import Structure, from_atoms

__all__ = ["AseDbDataset", "read_ase_db", "row_atoms"]


def row_atoms(row: Any) -> Any:
    """The row's Atoms with its ``key_value_pairs`` and scalar ``data`` entries in ``info``.

    Properties in ``row.data`` (how schnetpack's QM9 db stores them) are merged so that custom
    energy keys can name them; the calculator's own results stay on ``atoms.calc``.
    """
    atoms = row.toatoms()
    atoms.info.update(row.get("key_value_pairs", {}))
    data = row.get("data", {}) or {}
    for k, v in data.items():
        arr = np.asarray(v)
        if arr.ndim == 0 or arr.size == 1:
            atoms.info.setdefault(k, arr.reshape(-1)[0].item() if arr.size else None)
        elif arr.ndim == 2 and arr.shape[0] == len(atoms):
            atoms.arrays.setdefault(k, arr)
        else:
            atoms.info.setdefault(k, arr)
    return atoms


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def _aselmdb_value(raw: bytes) -> Any:
    from ase.io.jsonio import decode

    return decode(zlib.decompress(raw).decode("utf-8"))


def _aselmdb_row(raw: bytes, row_id: int) -> Any:
    """An ``AtomsRow`` from one stored aselmdb value (label arrays as numpy, as ASE expects)."""
    from ase.calculators.calculator import all_properties
    from ase.db.row import AtomsRow

    dct = _aselmdb_value(raw)
    if not isinstance(dct, dict) or "numbers" not in dct:
        raise ValueError("the value is not an ASE row (no 'numbers')")
    for key in all_properties:
        if isinstance(dct.get(key), list):
            dct[key] = np.array(dct[key])
    dct["id"] = row_id
    return AtomsRow(dct)


def _aselmdb_ids(env: Any, path: Path) -> list[int]:
    with env.begin() as txn:
        raw_next = txn.get(b"nextid")
        raw_deleted = txn.get(b"deleted_ids")
    try:
        nextid = int(_aselmdb_value(raw_next)) if raw_next is not None else 1
        deleted = set(_aselmdb_value(raw_deleted)) if raw_deleted is not None else set()
    except (zlib.error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: the aselmdb 'nextid'/'deleted_ids' entries are unreadable ({exc}); the "
            "file is corrupt or not an aselmdb database. Fix: re-download it."
        ) from exc
    return [i for i in range(1, nextid) if i not in deleted]


def _sqlite_index(path: Path) -> dict[str, np.ndarray]:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT id, natoms FROM systems ORDER BY id").fetchall()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise DataError(
            f"{path}: not a readable ASE SQLite database ({exc}). Fix: check that it is an ASE "
            "database and not truncated."
        ) from exc
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    return {"ids": arr[:, 0].copy(), "natoms": arr[:, 1].copy()}


def _aselmdb_index(path: Path) -> dict[str, np.ndarray]:
    env = open_lmdb(path)
    try:
        ids = _aselmdb_ids(env, path)
        natoms = np.zeros(len(ids), dtype=np.int64)
        unreadable: list[str] = []
        with env.begin() as txn:
            for i, row_id in enumerate(ids):
                try:
                    raw = txn.get(str(row_id).encode("ascii"))
                    natoms[i] = len(_decode_row(raw, row_id, path, i).numbers)
                except (DataError, lmdb_errors()) as exc:
                    # Indexed with 0 atoms; reading it raises again, naming the row.
                    if not isinstance(exc, DataError):
                        exc = lmdb_error(path, i, exc)
                    unreadable.append(str(exc))
    except lmdb_errors() as exc:
        raise lmdb_error(path, "(listing rows)", exc) from exc
    finally:
        close_lmdb(env)
    warn_unreadable(path, unreadable)
    return {"ids": np.asarray(ids, dtype=np.int64), "natoms": natoms}


def _decode_row(raw: bytes | None, row_id: int, path: Path, i: int) -> Any:
    if raw is None:
        raise DataError(
            f"{where(path, i)}: row id {row_id} is missing from the aselmdb database. Fix: the "
            f"file changed since it was indexed (eqv2 data index --rebuild {path}) or is corrupt."
        )
    try:
        return _aselmdb_row(raw, row_id)
    except Exception as exc:  # noqa: BLE001 - zlib/json/ASE raise many types on bad bytes
        raise DataError(
            f"{where(path, i)} (row id {row_id}): the row is truncated or corrupt "
            f"({type(exc).__name__}: {exc}). Fix: re-download or regenerate the database."
        ) from exc


def build_db_index(path: Path) -> dict[str, np.ndarray]:
    """Row ids (id order) and atom counts of an ASE database (SQLite or aselmdb)."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty. Fix: point at a database with rows.")
    if _is_sqlite(path):
        arrays = _sqlite_index(path)
    elif path.suffix == ".aselmdb":
        arrays = _aselmdb_index(path)
    else:
        raise DataError(
            f"{path}: not an SQLite ASE database. Fix: convert it (ase db) or read it with "
            "read_structures."
        )
    if len(arrays["ids"]) == 0:
        raise DataError(f"{path}: database has no rows. Fix: point at a database with rows.")
    return arrays


class AseDbDataset(RecordDataset):
    """An ASE database as a random-access dataset; ``info['id']`` is the row id."""

    format = "ase-db"

    def _build_index(self) -> dict[str, np.ndarray]:
        return build_db_index(self.path)

    def _use_index(self, arrays: dict[str, np.ndarray]) -> None:
        self.ids: np.ndarray = arrays["ids"]
        self._lmdb = self.path.suffix == ".aselmdb"

    def _close_handles(self, handles: dict[Any, Any]) -> None:
        if "env" in handles:
            close_lmdb(handles["env"])
        # ase's SQLite database keeps no open connection between calls: nothing to close.

    def _row(self, i: int, row_id: int) -> Any:
        h = self.handles()
        if self._lmdb:
            if "env" not in h:
                h["env"] = open_lmdb(self.path)
            try:
                with h["env"].begin() as txn:
                    raw = txn.get(str(row_id).encode("ascii"))
            except lmdb_errors() as exc:
                raise lmdb_error(self.path, i, exc) from exc
            return _decode_row(raw, row_id, self.path, i)
        if "db" not in h:
            import ase.db

            h["db"] = ase.db.connect(str(self.path), use_lock_file=False)
        try:
            return h["db"].get(id=row_id)
        except Exception as exc:  # noqa: BLE001 - sqlite raises many types on corrupt rows
            raise DataError(
                f"{where(self.path, i)} (row id {row_id}): cannot be read "
                f"({type(exc).__name__}: {exc}). Fix: the database is corrupt or changed since "
                f"it was indexed; re-download it or run eqv2 data index --rebuild {self.path}"
            ) from exc

    def _read(self, i: int) -> Structure:
        row_id = int(self.ids[i])
        return self._from_atoms(row_atoms(self._row(i, row_id)), i, id=row_id)


def read_ase_db(
    path: str | os.PathLike[str],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    index: Index = ":",
    require: Iterable[str] = (),
    selection: Any = None,
) -> list[Structure]:
    """Read structures from an ASE database (``.db`` SQLite/JSON, ``.aselmdb``).

    ``selection`` is passed to ``db.select`` (not supported for ``.aselmdb``, which eqv2 reads
    itself); ``index`` then picks among the selected rows in id order. ``info["index"]`` is the
    position among the selected rows and ``info["id"]`` the row id.
    """
    import ase.db

    p = check_path(path)
    if p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty. Fix: point at a database with rows.")
    if selection is None and (p.suffix == ".aselmdb" or _is_sqlite(p)):
        keys = LabelKeys(energy_key, forces_key, stress_key)
        ds = AseDbDataset(p, keys, tuple(require))
        try:
            return [ds[i] for i in select(len(ds), index, p)]
        finally:
            ds.close()
    if p.suffix == ".aselmdb":
        raise DataError(f"{p}: selection queries are not supported for .aselmdb files.")
    try:
        db = ase.db.connect(str(p))
        rows = list(db.select(selection))
    except Exception as exc:  # noqa: BLE001 - sqlite/json errors differ by backend
        raise DataError(
            f"{p}: ASE could not open the database ({type(exc).__name__}: {exc}). Fix: check "
            "that it is an ASE database."
        ) from exc
    if not rows:
        raise DataError(f"{p}: database has no rows (selection {selection!r}).")
    out = []
    for i in select(len(rows), index, p):
        row = rows[i]
        s = from_atoms(
            row_atoms(row),
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
            source=str(p),
            index=i,
            info={"id": int(row.id)},
        )
        out.append(s.validate(require))
    return out
