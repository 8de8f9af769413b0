"""eqv2's preprocessed store: an LMDB of safely serialised :class:`Structure` records.

Written by :func:`write_store` (the backend of ``eqv2 data convert``, via :func:`convert`) and
read by :func:`open_store`. Nothing in a store is pickled: each record is

    b"EQV2REC2" | uint32 CRC-32 | uint32 header length | UTF-8 JSON header | raw array bytes

(integers little-endian; the CRC-32 covers every byte after it, so a flipped bit anywhere in a
record is refused instead of silently moving an atom), where the header lists each array's
dtype (one of ``<i8``, ``<f8``, ``|b1``), shape and byte offset, plus the energy, scalar
``targets`` and ``info`` as JSON (Python's float repr round-trips exactly; array targets are
arrays named ``target:<name>``). Keys are ``b"0"``, ``b"1"``, ...; ``b"__eqv2_metadata__"``
holds JSON metadata (format, version, count, label keys, cutoff, max_neighbors, user entries)
and ``b"__eqv2_counts__"`` the
per-record ``natoms`` and, when a cutoff was given, ``nedges`` arrays for load balancing.

The file is written under a temporary name beside the target, synced, and renamed into place
at the end, so a failure never leaves a half-written store at ``path``.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from eqv2.data._common import (
    Index,
    close_lmdb,
    lmdb_error,
    lmdb_errors,
    open_lmdb,
    select,
)
from eqv2.data.dataset import RecordDataset
from eqv2.data.errors import DataError, where
from eqv2.data.records import Structure
from eqv2.safe_io import atomic_write_path

__all__ = [
    "FORMAT",
    "VERSION",
    "StoreDataset",
    "decode_record",
    "encode_record",
    "is_store",
    "open_store",
    "write_store",
]

FORMAT = "eqv2-store"
VERSION = 2  # 2: CRC-32 per record
_MAGIC = b"EQV2REC2"
_TARGET = "target:"
_META_KEY = b"__eqv2_metadata__"
_COUNTS_KEY = b"__eqv2_counts__"
_DTYPES = {"<i8": np.int64, "<f8": np.float64, "|b1": np.bool_}
_ARRAY_FIELDS = ("numbers", "positions", "cell", "pbc", "tags", "fixed", "forces", "stress")
_BATCH = 512  # records per write transaction


def _encode(arrays: dict[str, np.ndarray], extra: dict[str, Any]) -> bytes:
    spec = {}
    chunks = []
    offset = 0
    for name, arr in arrays.items():
        dt = np.dtype(arr.dtype).newbyteorder("<") if arr.dtype.kind != "b" else np.dtype("|b1")
        a = np.ascontiguousarray(arr, dtype=dt)
        b = a.tobytes()
        spec[name] = [dt.str, list(a.shape), offset, len(b)]
        chunks.append(b)
        offset += len(b)
    header = json.dumps({"arrays": spec, **extra}, allow_nan=False).encode("utf-8")
    payload = b"".join([struct.pack("<I", len(header)), header, *chunks])
    return b"".join([_MAGIC, struct.pack("<I", zlib.crc32(payload)), payload])


def _decode(raw: bytes, label: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    if raw[: len(_MAGIC)] != _MAGIC:
        raise DataError(
            f"{label}: not an eqv2 store record of this version (magic bytes "
            f"{bytes(raw[: len(_MAGIC)])!r}, expected {_MAGIC!r}). Fix: regenerate the store "
            "with eqv2 data convert."
        )
    try:
        (crc,) = struct.unpack_from("<I", raw, len(_MAGIC))
        if zlib.crc32(memoryview(raw)[len(_MAGIC) + 4 :]) != crc:
            raise DataError(
                f"{label}: store record fails its CRC-32 checksum: its bytes were changed on "
                "disk (bit flip, bad copy or truncation). Fix: regenerate the store with eqv2 "
                "data convert, or restore it from a good copy."
            )
        (hlen,) = struct.unpack_from("<I", raw, len(_MAGIC) + 4)
        start = len(_MAGIC) + 8
        header = json.loads(raw[start : start + hlen].decode("utf-8"))
        body = memoryview(raw)[start + hlen :]
        arrays = {}
        for name, (dts, shape, off, nbytes) in header.pop("arrays").items():
            if dts not in _DTYPES:
                raise ValueError(f"array '{name}' has unsupported dtype {dts!r}")
            if off + nbytes > len(body):
                raise ValueError(f"array '{name}' runs past the end of the record")
            arr = np.frombuffer(body[off : off + nbytes], dtype=np.dtype(dts))
            arrays[name] = arr.reshape(shape).astype(_DTYPES[dts])  # astype copies: writable
        return arrays, header
    except DataError:
        raise
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
        raise DataError(
            f"{label}: store record is truncated or corrupt ({exc}). Fix: regenerate the store "
            "with eqv2 data convert."
        ) from exc


def encode_record(s: Structure) -> bytes:
    """Serialise a structure without pickle (see the module docstring for the layout)."""
    arrays = {k: getattr(s, k) for k in _ARRAY_FIELDS if getattr(s, k) is not None}
    scalars = {}
    for name, value in s.targets.items():
        if isinstance(value, float):
            scalars[name] = value
        else:
            arrays[_TARGET + name] = value
    return _encode(arrays, {"energy": s.energy, "targets": scalars, "info": s.info})


def decode_record(raw: bytes, label: str = "<record>") -> Structure:
    """Inverse of :func:`encode_record`; corrupt bytes raise :class:`DataError` naming ``label``."""
    arrays, header = _decode(raw, label)
    missing = {"numbers", "positions"} - arrays.keys()
    if missing:
        raise DataError(f"{label}: store record lacks field(s) {sorted(missing)}.")
    targets: dict[str, float | np.ndarray] = dict(header.get("targets", {}))
    for name in [k for k in arrays if k.startswith(_TARGET)]:
        targets[name[len(_TARGET) :]] = arrays.pop(name)
    return Structure(
        energy=header.get("energy"), info=header.get("info", {}), targets=targets, **arrays
    )


def is_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an LMDB file written by :func:`write_store`."""
    p = Path(path)
    if not p.is_file():
        return False
    env = open_lmdb(p)
    try:
        with env.begin() as txn:
            return txn.get(_META_KEY) is not None
    finally:
        close_lmdb(env)


def _nedges(s: Structure, cutoff: float, max_neighbors: int | None) -> int:
    from eqv2.graph import radius_graph

    try:
        nl = radius_graph(s.positions, s.cell, s.pbc, cutoff, max_neighbors)
    except ValueError as exc:
        raise DataError(f"{s.label()}: cannot build its graph ({exc}).") from exc
    return int(nl.edge_index.shape[1])


def _fill(
    env: Any,
    structures: Iterable[Structure],
    path: Path,
    natoms: list[int],
    nedges: list[int],
    require: tuple[str, ...],
    cutoff: float | None,
    max_neighbors: int | None,
    metadata: dict[str, Any] | None,
) -> None:
    import lmdb

    pending: list[tuple[bytes, bytes]] = []

    def flush() -> None:
        while True:
            try:
                with env.begin(write=True) as txn:
                    for k, v in pending:
                        txn.put(k, v)
                break
            except lmdb.MapFullError:  # grow the map and retry the whole batch
                env.set_mapsize(env.info()["map_size"] * 2)
        pending.clear()

    for s in structures:
        s.validate(require)
        if cutoff is not None:
            nedges.append(_nedges(s, cutoff, max_neighbors))
        pending.append((str(len(natoms)).encode("ascii"), encode_record(s)))
        natoms.append(len(s))
        if len(pending) >= _BATCH:
            flush()
    if not natoms:
        raise DataError(f"{path}: no structures to write. Fix: check the inputs.")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "count": len(natoms),
        "total_atoms": int(sum(natoms)),
        "cutoff": cutoff,
        "max_neighbors": max_neighbors,
        "user": metadata or {},
    }
    counts = {"natoms": np.asarray(natoms, dtype=np.int64)}
    if cutoff is not None:
        counts["nedges"] = np.asarray(nedges, dtype=np.int64)
    try:
        pending.append((_META_KEY, json.dumps(meta, allow_nan=False).encode("utf-8")))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: metadata is not JSON-serialisable ({exc}).") from exc
    pending.append((_COUNTS_KEY, _encode(counts, {})))
    flush()


def write_store(
    structures: Iterable[Structure],
    path: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
    cutoff: float | None = None,
    max_neighbors: int | None = None,
    require: Iterable[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write ``structures`` to a store at ``path`` atomically; return the path.

    Each structure is validated (``require`` names labels that must be present). With a
    ``cutoff`` (Å), the edge count of each structure's radius graph (``max_neighbors`` cap) is
    stored for atom/edge-balanced batching. ``metadata`` entries (JSON-serialisable) are kept
    under ``metadata["user"]``.

    Raises:
        DataError: invalid structure (nothing is written), no structures, or ``path`` exists
            and ``overwrite`` is False.
    """
    import lmdb

    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"{path}: already exists. Fix: choose another path or pass overwrite=True.")
    require = tuple(require)
    natoms: list[int] = []
    nedges: list[int] = []
    with atomic_write_path(path) as tmp:
        # lock=False: no "-lock" side file, and nobody else can see the temporary name.
        env = lmdb.open(str(tmp), subdir=False, lock=False, map_size=1 << 28, meminit=False)
        try:
            _fill(env, structures, path, natoms, nedges, require, cutoff, max_neighbors, metadata)
            env.sync(True)
        finally:
            env.close()
    return path


class StoreDataset(RecordDataset):
    """Read access to a store: ``len(ds)``, ``ds[i] -> Structure``, ``ds.natoms``, ``ds.nedges``.

    The store is its own index (its counts record). The LMDB environment is opened lazily and
    reopened in a new process (after ``fork``, as in DataLoader workers), because LMDB handles
    must not cross processes. Label keys do not apply: a store's labels are canonical.
    """

    format = "store"

    def __init__(self, path: str | os.PathLike[str], require: Iterable[str] = ()) -> None:
        self._setup(path, None, require)
        env = open_lmdb(self.path)
        try:
            with env.begin() as txn:
                raw_meta = txn.get(_META_KEY)
                raw_counts = txn.get(_COUNTS_KEY)
        finally:
            close_lmdb(env)
        if raw_meta is None or raw_counts is None:
            raise DataError(
                f"{self.path}: not an eqv2 store (no metadata record). Fix: write it with "
                "eqv2 data convert, or read OC20 LMDBs with read_structures."
            )
        try:
            self.metadata: dict[str, Any] = json.loads(raw_meta.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{where(self.path, _META_KEY)}: metadata is corrupt ({exc}).") from exc
        version = self.metadata.get("version")
        if self.metadata.get("format") != FORMAT or version != VERSION:
            why = (
                " (an older store without per-record checksums)"
                if self.metadata.get("format") == FORMAT and version == 1
                else ""
            )
            raise DataError(
                f"{self.path}: store format {self.metadata.get('format')!r} version "
                f"{version!r}{why}; this eqv2 reads {FORMAT!r} version {VERSION}. "
                "Fix: regenerate the store with this eqv2 (eqv2 data convert SOURCES -o STORE)."
            )
        counts, _ = _decode(raw_counts, where(self.path, _COUNTS_KEY))
        self.natoms = counts["natoms"]
        self.nedges = counts.get("nedges")
        if len(self.natoms) != self.metadata["count"]:
            raise DataError(f"{self.path}: metadata count and natoms length disagree (corrupt).")
        self.index_path = self.path

    def _env(self) -> Any:
        h = self.handles()
        if "env" not in h:
            h["env"] = open_lmdb(self.path)
        return h["env"]

    def _close_handles(self, handles: dict[Any, Any]) -> None:
        for env in handles.values():
            close_lmdb(env)

    def _read(self, i: int) -> Structure:
        key = str(i).encode("ascii")
        try:
            with self._env().begin() as txn:
                raw = txn.get(key)
        except lmdb_errors() as exc:
            raise lmdb_error(self.path, i, exc) from exc
        if raw is None:
            raise DataError(f"{where(self.path, key)}: record is missing (store is corrupt).")
        return decode_record(raw, where(self.path, i))


def open_store(path: str | os.PathLike[str], require: Iterable[str] = ()) -> StoreDataset:
    """Open a store written by :func:`write_store`."""
    return StoreDataset(path, require)


def read_store(
    path: str | os.PathLike[str], *, index: Index = ":", require: Iterable[str] = ()
) -> list[Structure]:
    """Selected structures of a store as a list, validated against ``require``."""
    ds = open_store(path)
    try:
        return [ds[i].validate(require) for i in select(len(ds), index, path)]
    finally:
        ds.close()
