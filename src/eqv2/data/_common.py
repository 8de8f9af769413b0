"""Helpers shared by the readers: path checks, index selection, safe LMDB opening."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from eqv2.data.errors import DataError, MissingFileError

Index = int | slice | str


def check_path(path: str | os.PathLike[str]) -> Path:
    """``Path(path)``, or :class:`MissingFileError` naming it."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(
            f"{p}: no such file or directory. Fix: check the path (relative paths are resolved "
            f"from {Path.cwd()})."
        )
    return p


def select(n: int, index: Index, source: object) -> list[int]:
    """Indices of ``range(n)`` picked by ``index`` (an int, a slice, or ASE-style ``"a:b:c"``)."""
    if isinstance(index, str):
        if ":" in index:
            parts = [int(x) if x.strip() else None for x in index.split(":")]
            index = slice(*parts)
        else:
            index = int(index)
    if isinstance(index, slice):
        return list(range(n))[index]
    i = int(index)
    if not -n <= i < n:
        raise DataError(f"{source}: index {i} is out of range for {n} structures.")
    return [i % n]


# Open read-only environments, shared per (process, device, inode) with a reference count.
# py-lmdb refuses to open one file twice in a process, so two readers of the same file (a store
# dataset and read_structures, say) must share one handle.
_ENVS: dict[tuple[int, int, int], list[Any]] = {}


def _forget_inherited() -> None:
    """After a fork, drop handles opened by the parent (LMDB handles must not cross processes)."""
    pid = os.getpid()
    for key in [k for k in _ENVS if k[0] != pid]:
        env = _ENVS.pop(key)[0]
        try:
            env.close()  # read-only, lock-free: only unmaps the parent's copy in this process
        except Exception:  # noqa: BLE001, S110 - best effort; the handle is unusable anyway
            pass


def open_lmdb(path: Path) -> Any:
    """Open an LMDB file (or a directory holding ``data.mdb``) read-only, checking its size.

    Returns a shared handle; give it back with :func:`close_lmdb`. LMDB memory-maps the file:
    reading a page past the end of a truncated file would kill the process with SIGBUS rather
    than raise, so the size implied by the header is checked first.
    """
    import lmdb

    _forget_inherited()
    data_file = path / "data.mdb" if path.is_dir() else path
    if path.is_dir() and not data_file.exists():
        raise DataError(f"{path}: directory has no data.mdb, so it is not an LMDB environment.")
    st = data_file.stat()
    key = (os.getpid(), st.st_dev, st.st_ino)
    if key in _ENVS:
        _ENVS[key][1] += 1
        return _ENVS[key][0]
    size = st.st_size
    if size == 0:
        raise DataError(f"{path}: file is empty. Fix: regenerate the LMDB file.")
    try:
        env = lmdb.open(
            str(path),
            subdir=path.is_dir(),
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
            max_readers=256,
        )
    except lmdb.Error as exc:
        raise DataError(
            f"{path}: not a readable LMDB file ({exc}); it is truncated or corrupt. Fix: "
            "re-download or regenerate it."
        ) from exc
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if size < need:
        env.close()
        raise DataError(
            f"{path}: LMDB file is truncated ({size} bytes, its header needs {need}). Fix: "
            "re-download or regenerate it."
        )
    _ENVS[key] = [env, 1]
    return env


def close_lmdb(env: Any) -> None:
    """Release a handle from :func:`open_lmdb`; the last release closes it."""
    for key, entry in list(_ENVS.items()):
        if entry[0] is env:
            entry[1] -= 1
            if entry[1] <= 0:
                del _ENVS[key]
                env.close()
            return


def lmdb_errors() -> type[Exception]:
    """The base class of py-lmdb's errors (imported lazily, like lmdb itself)."""
    import lmdb

    return lmdb.Error


def lmdb_error(path: Path, index: object, exc: Exception) -> DataError:
    """A :class:`DataError` for an LMDB failure while reading record ``index`` of ``path``.

    A page that is missing or a map that was resized means another process is writing the
    file (or wrote it after it was opened); anything else means the file is damaged.
    """
    import lmdb

    name = type(exc).__name__
    if isinstance(exc, (lmdb.PageNotFoundError, lmdb.MapResizedError)):
        cause = (
            "the file changed while it was read: another process is probably writing it. Fix: "
            "wait until the writer has finished (or read a finished copy), then rebuild the "
            f"index: eqv2 data index --rebuild {path}"
        )
    elif isinstance(exc, lmdb.CorruptedError):
        cause = "a database page is corrupted (MDB_CORRUPTED). Fix: re-download or regenerate it."
    else:
        cause = "the LMDB file is damaged or unreadable. Fix: re-download or regenerate it."
    return DataError(f"{path}, structure {index}: LMDB read failed ({name}: {exc}); {cause}")


def warn_unreadable(path: Path, problems: list[str]) -> None:
    """Warn once per index build about records that could not be read (``problems``)."""
    if not problems:
        return
    import warnings

    warnings.warn(
        f"{path}: {len(problems)} record(s) cannot be read and are indexed with 0 atoms; "
        f"reading one raises DataError naming it (training stops at it). First: "
        f"{problems[0]}",
        stacklevel=3,
    )


def record_label(path: Path, index: int, key: bytes) -> str:
    """``"data.lmdb, structure 7 (record key b'7')"``: a record of a keyed file, by both names."""
    return f"{path}, structure {index} (record key {key!r})"
