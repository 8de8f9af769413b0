"""Record indexes saved beside the data, so a dataset opens without decoding its records.

An index is a ``.npz`` of numpy arrays (per-record atom counts plus whatever the format needs to
find record ``i``: byte offsets, row ids, shard and key) and a JSON header with the format, the
index version and a fingerprint (name, size, mtime) of every data file. A fingerprint that no
longer matches the files makes the index stale: it is rebuilt on the next open.

Where it lives: beside the data (``train.extxyz`` → ``train.extxyz.eqv2-index.npz``; a shard
directory → ``DIR/eqv2-index.npz``), or, when that location is not writable, in the user cache
directory (``$EQV2_CACHE_DIR``, else ``$XDG_CACHE_HOME/eqv2/index``, else
``~/.cache/eqv2/index``) under a name derived from the data's absolute path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from eqv2.safe_io import atomic_write_path

__all__ = ["INDEX_VERSION", "cache_dir", "fingerprint", "index_locations", "load_or_build"]

INDEX_VERSION = 1
_SUFFIX = ".eqv2-index.npz"


def cache_dir() -> Path:
    """The user cache directory for indexes of read-only data (see the module docstring)."""
    if os.environ.get("EQV2_CACHE_DIR"):
        return Path(os.environ["EQV2_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eqv2" / "index"


def index_locations(path: Path) -> list[Path]:
    """Where the index of ``path`` may live, in the order they are tried."""
    path = Path(path)
    beside = path / _SUFFIX[1:] if path.is_dir() else path.with_name(path.name + _SUFFIX)
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8")).hexdigest()[:16]
    return [beside, cache_dir() / f"{path.name}-{digest}{_SUFFIX}"]


def fingerprint(files: Sequence[Path]) -> list[list[str | int]]:
    """``[name, size, mtime_ns]`` of each data file: any write changes it."""
    out: list[list[str | int]] = []
    for f in files:
        st = Path(f).stat()
        out.append([Path(f).name, int(st.st_size), int(st.st_mtime_ns)])
    return out


def _load(loc: Path, header: dict) -> dict[str, np.ndarray] | None:
    try:
        with np.load(loc, allow_pickle=False) as z:
            saved = json.loads(str(z["__header__"]))
            if saved != header:
                return None
            return {k: z[k] for k in z.files if k != "__header__"}
    except (OSError, ValueError, KeyError):  # unreadable or foreign file: rebuild it
        return None


def _save(loc: Path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    with atomic_write_path(loc) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, __header__=np.array(json.dumps(header)), **arrays)


def load_or_build(
    path: Path,
    kind: str,
    files: Sequence[Path],
    build: Callable[[], dict[str, np.ndarray]],
    rebuild: bool = False,
) -> tuple[dict[str, np.ndarray], Path | None]:
    """The index arrays of ``path`` (format ``kind``, data ``files``), building them if needed.

    Returns the arrays and where they are saved (``None`` when no location was writable; the
    index then lives in memory only and is rebuilt on the next open).
    """
    header = {"kind": kind, "version": INDEX_VERSION, "files": fingerprint(files)}
    locations = index_locations(path)
    if not rebuild:
        for loc in locations:
            if loc.is_file():
                arrays = _load(loc, header)
                if arrays is not None:
                    return arrays, loc
    arrays = {k: np.ascontiguousarray(v) for k, v in build().items()}
    for loc in locations:
        try:
            _save(loc, header, arrays)
            return arrays, loc
        except OSError:  # read-only data directory: try the cache
            continue
    return arrays, None
