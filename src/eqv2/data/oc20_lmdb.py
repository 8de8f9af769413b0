"""Reader for OC20/OC22 LMDB files whose records are pickled torch_geometric ``Data`` objects.

Layout (as written by fairchem/ocp preprocessing): keys ``b"0"``, ``b"1"``, ... each hold
``pickle.dumps(data, protocol=-1)``; many files also have a ``b"length"`` key with the count.
A dataset may be one ``.lmdb`` file or a directory of ``*.lmdb`` shards (read in sorted name
order). Records are loaded with :mod:`eqv2.data.unpickle`: no torch_geometric, no file code.

Field mapping to :class:`~eqv2.data.records.Structure`: ``atomic_numbers`` -> numbers,
``pos`` -> positions, ``cell`` ((1,3,3) or (3,3)) -> cell, ``pbc`` (absent: all True when the
cell is non-zero, as fairchem's periodic graphs assume), energy from ``energy_key`` (default
``energy``, then ``y``), forces from ``forces_key`` (default ``forces``, then ``force``),
stress from ``stress_key`` (default ``stress``), ``tags``, ``fixed``; scalar fields such as
``sid``, ``fid``, ``natoms``, ``y_init``, ``y_relaxed`` go to ``info``. Graph fields
(``edge_index``, ``cell_offsets``, ...) and ``pos_relaxed`` are dropped: eqv2 rebuilds graphs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
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
    record_label,
    select,
    warn_unreadable,
)
from eqv2.data.dataset import RecordDataset
from eqv2.data.errors import DataError, UnsafePickleError, where
from eqv2.data.records import Structure
from eqv2.data.unpickle import PygData, TensorShape, safe_loads
from eqv2.graph.ase_convert import numeric_target

__all__ = [
    "OC20LmdbDataset",
    "build_oc20_index",
    "iter_oc20_lmdb",
    "lmdb_files",
    "read_oc20_lmdb",
    "record_to_structure",
]

_ENERGY_ALIASES = ("y",)
_FORCES_ALIASES = ("force",)


def lmdb_files(path: str | os.PathLike[str]) -> list[Path]:
    """The LMDB files of a dataset: ``[path]`` for a file, sorted ``*.lmdb`` for a directory."""
    p = check_path(path)
    if p.is_dir():
        if (p / "data.mdb").exists():
            return [p]
        files = sorted(p.glob("*.lmdb"))
        if not files:
            raise DataError(f"{p}: directory has no *.lmdb files. Fix: point at the shards.")
        return files
    return [p]


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    return value


def _scalar(value: Any) -> Any:
    arr = np.asarray(_to_numpy(value))
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        return None
    return arr.reshape(()).item()


def _keys(env: Any, path: Path) -> list[bytes]:
    with env.begin() as txn:
        raw = txn.get(b"length")
        if raw is not None:
            try:
                n = int(safe_loads(raw, where(path, b"length")))
            except Exception as exc:  # noqa: BLE001 - any failure means a corrupt count
                raise DataError(
                    f"{path}, record key b'length': unreadable count ({exc}). Fix: "
                    "regenerate the file or delete the 'length' key."
                ) from exc
            return [str(i).encode("ascii") for i in range(n)]
        keys = [k for k in txn.cursor().iternext(keys=True, values=False) if k.isdigit()]
    return sorted(keys, key=int)


#: Graph fields some OC20 LMDBs store precomputed: eqv2 builds its own graphs, they are no labels.
_GRAPH_FIELDS = frozenset(("edge_index", "cell_offsets", "distances", "neighbors", "offsets"))


def record_to_structure(
    fields: dict[str, Any],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    source: str = "<record>",
    index: int | None = None,
) -> Structure:
    """Convert the fields of one OC20 ``Data`` record to a :class:`Structure` (not validated)."""
    label = where(source, index)
    f = {k: _to_numpy(v) for k, v in fields.items()}
    for name in ("atomic_numbers", "pos"):
        if name not in f:
            raise DataError(
                f"{label}: field '{name}' is missing from the OC20 record (fields: "
                f"{sorted(f)}). Fix: the file is not an OC20 S2EF/IS2RE LMDB."
            )
    numbers = np.asarray(f["atomic_numbers"])
    if not np.all(numbers == np.round(numbers)):
        raise DataError(f"{label}: field 'atomic_numbers' holds non-integer values.")
    pos = np.asarray(f["pos"], dtype=np.float64)
    natoms = _scalar(f["natoms"]) if f.get("natoms") is not None else None
    if natoms is not None and natoms != numbers.size:
        raise DataError(
            f"{label}: field 'natoms' is {natoms} but 'atomic_numbers' has {numbers.size} "
            "entries. Fix: the record is inconsistent; regenerate the LMDB file."
        )
    cell = f.get("cell")
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if cell.shape == (1, 3, 3):
        cell = cell[0]
    pbc = f.get("pbc")
    if pbc is None:
        pbc = np.full(3, bool(np.any(cell)))
    else:
        pbc = np.asarray(pbc, dtype=bool).reshape(-1)
        pbc = np.broadcast_to(pbc, (3,)) if pbc.size == 1 else pbc

    def pick(key: str, default: str, aliases: tuple[str, ...]) -> Any:
        for k in (key, *aliases) if key == default else (key,):
            if f.get(k) is not None:
                return f[k]
        return None

    energy = pick(energy_key, "energy", _ENERGY_ALIASES)
    if energy is not None:
        e = np.asarray(energy, dtype=np.float64).reshape(-1)
        if e.size != 1:
            raise DataError(f"{label}: field '{energy_key}' has {e.size} values; expected 1.")
        energy = float(e[0])
    forces = pick(forces_key, "forces", _FORCES_ALIASES)
    stress = pick(stress_key, "stress", ())
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        stress = stress[0] if stress.shape == (1, 3, 3) else stress
    info: dict[str, Any] = {}
    targets: dict[str, np.ndarray] = {}
    skip = {"atomic_numbers", "pos", "cell", "pbc", "tags", "fixed", energy_key, forces_key}
    skip |= {stress_key, *_ENERGY_ALIASES, *_FORCES_ALIASES}  # labels, not metadata
    for k, v in f.items():
        if k in skip or k.startswith("_"):
            continue
        s = _scalar(v)
        if s is not None:
            info[k] = s
        elif isinstance(v, str):
            info[k] = v
        elif k not in _GRAPH_FIELDS and (arr := numeric_target(v)) is not None:
            targets[k] = arr  # e.g. IS2RS's pos_relaxed (N, 3), per-structure vectors
    info["source"] = source
    if index is not None:
        info["index"] = index
    sid = info.get("sid")
    info.setdefault("name", f"sid {sid}" if sid is not None else f"{Path(source).name}:{index}")
    return Structure(
        numbers=numbers.astype(np.int64).reshape(-1),
        positions=pos,
        cell=cell,
        pbc=pbc,
        energy=energy,
        forces=None if forces is None else np.asarray(forces, dtype=np.float64),
        stress=stress,
        tags=f.get("tags"),
        fixed=f.get("fixed"),
        info=info,
        targets=targets,
    )


def iter_oc20_lmdb(
    path: str | os.PathLike[str],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    index: Index = ":",
    require: Iterable[str] = (),
) -> Iterator[Structure]:
    """Yield validated structures of an OC20 LMDB file or shard directory (see the module doc).

    ``info["index"]`` is the position in the whole dataset (shards concatenated); ``index``
    selects among those positions.
    """
    require = tuple(require)
    shards = []
    for file in lmdb_files(path):
        env = open_lmdb(file)
        shards.append((file, env, _keys(env, file)))
    try:
        total = sum(len(k) for _, _, k in shards)
        if total == 0:
            raise DataError(f"{path}: LMDB dataset has no records. Fix: check the file.")
        wanted = set(select(total, index, path))
        offset = 0
        for file, env, keys in shards:
            with env.begin() as txn:
                for j, key in enumerate(keys):
                    gi = offset + j
                    if gi not in wanted:
                        continue
                    yield _load_one(
                        txn, file, key, gi, energy_key, forces_key, stress_key
                    ).validate(require)
            offset += len(keys)
    finally:
        for _, env, _ in shards:
            close_lmdb(env)


def _load_one(
    txn: Any, file: Path, key: bytes, gi: int, energy_key: str, forces_key: str, stress_key: str
) -> Structure:
    label = record_label(file, gi, key)
    raw = txn.get(key)
    if raw is None:
        raise DataError(
            f"{label}: record is missing (the 'length' key promises it). Fix: regenerate the "
            "file, or delete its 'length' key so eqv2 reads the keys that exist."
        )
    fields = _fields(raw, label)
    return record_to_structure(
        fields,
        energy_key=energy_key,
        forces_key=forces_key,
        stress_key=stress_key,
        source=str(file),
        index=gi,
    )


def read_oc20_lmdb(path: str | os.PathLike[str], **kwargs: Any) -> list[Structure]:
    """All selected structures of an OC20 LMDB as a list (see :func:`iter_oc20_lmdb`)."""
    return list(iter_oc20_lmdb(path, **kwargs))


def _fields(raw: bytes, label: str, shapes_only: bool = False) -> dict[str, Any]:
    """The field dict of one pickled record, loaded with the restricted unpickler."""
    try:
        obj = safe_loads(raw, label, shapes_only)
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - pickle raises many types on corrupt bytes
        raise DataError(
            f"{label}: record is truncated or corrupt ({type(exc).__name__}: {exc}). Fix: "
            "re-download or regenerate the LMDB file."
        ) from exc
    if isinstance(obj, PygData):
        return obj.attributes()
    if isinstance(obj, dict):
        return obj
    raise DataError(
        f"{label}: record is a {type(obj).__name__}, not a torch_geometric Data object. "
        "Fix: the file is not an OC20 LMDB."
    )


def _record_natoms(raw: bytes, label: str) -> int:
    """Atom count of one pickled record (decoded, since OC20 files keep no separate count)."""
    fields = _fields(raw, label, shapes_only=True)
    numbers = fields.get("atomic_numbers")
    if numbers is None:
        raise DataError(f"{label}: record has no 'atomic_numbers'; not an OC20 LMDB record.")
    if isinstance(numbers, TensorShape):
        return int(np.prod(numbers))
    return int(np.asarray(numbers).size)


def _fairchem_natoms(path: Path, total: int) -> np.ndarray | None:
    """``natoms`` from fairchem's ``metadata.npz`` beside the shards, when it fits the data."""
    meta = (path if path.is_dir() else path.parent) / "metadata.npz"
    if not meta.is_file():
        return None
    try:
        with np.load(meta, allow_pickle=False) as z:
            natoms = np.asarray(z["natoms"], dtype=np.int64).reshape(-1)
    except (OSError, ValueError, KeyError):
        return None
    return natoms if len(natoms) == total else None


def build_oc20_index(path: Path, files: list[Path]) -> dict[str, np.ndarray]:
    """``shard`` (which file), ``key`` (LMDB key as an int) and ``natoms`` of every record."""
    shard_ids: list[np.ndarray] = []
    key_ids: list[np.ndarray] = []
    for s, file in enumerate(files):
        env = open_lmdb(file)
        try:
            keys = _keys(env, file)
        except lmdb_errors() as exc:
            raise lmdb_error(file, "(listing keys)", exc) from exc
        finally:
            close_lmdb(env)
        key_ids.append(np.asarray([int(k) for k in keys], dtype=np.int64))
        shard_ids.append(np.full(len(keys), s, dtype=np.int32))
    key = np.concatenate(key_ids) if key_ids else np.zeros(0, np.int64)
    shard = np.concatenate(shard_ids) if shard_ids else np.zeros(0, np.int32)
    if len(key) == 0:
        raise DataError(f"{path}: LMDB dataset has no records. Fix: check the file.")
    natoms = _fairchem_natoms(path, len(key))
    if natoms is None:
        natoms = np.zeros(len(key), dtype=np.int64)
        unreadable: list[str] = []
        for s, file in enumerate(files):
            env = open_lmdb(file)
            try:
                with env.begin() as txn:
                    for i in np.flatnonzero(shard == s):
                        kb = str(int(key[i])).encode("ascii")
                        label = record_label(file, i, kb)
                        try:
                            raw = txn.get(kb)
                            if raw is None:
                                raise DataError(f"{label}: record is missing.")
                            natoms[i] = _record_natoms(raw, label)
                        except (DataError, lmdb_errors()) as exc:
                            # Indexed with 0 atoms (no real structure has none); reading it
                            # raises the error again, naming the record.
                            if not isinstance(exc, DataError):
                                exc = lmdb_error(file, i, exc)
                            unreadable.append(str(exc))
            finally:
                close_lmdb(env)
        warn_unreadable(path, unreadable)
    return {"shard": shard, "key": key, "natoms": natoms}


class OC20LmdbDataset(RecordDataset):
    """An OC20 LMDB file or directory of shards as a random-access dataset.

    ``info['index']`` is the position in the whole dataset (shards in sorted name order).
    """

    format = "oc20-lmdb"

    def _data_files(self) -> list[Path]:
        self.files = lmdb_files(self.path)
        return self.files

    def _build_index(self) -> dict[str, np.ndarray]:
        return build_oc20_index(self.path, self.files)

    def _use_index(self, arrays: dict[str, np.ndarray]) -> None:
        self.shard: np.ndarray = arrays["shard"]
        self.key: np.ndarray = arrays["key"]

    def _env(self, s: int) -> Any:
        h = self.handles()
        if s not in h:
            h[s] = open_lmdb(self.files[s])
        return h[s]

    def _close_handles(self, handles: dict[Any, Any]) -> None:
        for env in handles.values():
            close_lmdb(env)

    def _read(self, i: int) -> Structure:
        s = int(self.shard[i])
        file = self.files[s]
        key = str(int(self.key[i])).encode("ascii")
        k = self.keys
        try:
            with self._env(s).begin() as txn:
                return _load_one(txn, file, key, i, k.energy_key, k.forces_key, k.stress_key)
        except lmdb_errors() as exc:
            raise lmdb_error(file, i, exc) from exc
