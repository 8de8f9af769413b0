"""The dataset protocol every format implements, its shared base, and :class:`ListDataset`.

A dataset is random access: ``len(ds)``, ``ds[i] -> Structure``, ``ds.natoms`` (atoms per
record, from an index, without decoding records) and ``ds.nedges`` (edges per record when the
format stores them, else ``None``). File-backed datasets hold only their index in memory, open
file handles lazily, reopen them in a new process (after ``fork`` or when unpickled after
``spawn``, as in DataLoader workers), and never pickle a handle.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from eqv2.data._common import check_path
from eqv2.data.errors import DataError
from eqv2.data.index import load_or_build
from eqv2.data.records import Structure, from_atoms

__all__ = ["Dataset", "LabelKeys", "ListDataset", "RecordDataset"]


@runtime_checkable
class Dataset(Protocol):
    """What every eqv2 dataset offers (file-backed or in memory)."""

    natoms: np.ndarray
    nedges: np.ndarray | None

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Structure: ...


@dataclass(frozen=True)
class LabelKeys:
    """Where a format's records keep their labels (see ``eqv2.data.from_atoms``)."""

    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"


def _position(i: Any, n: int, source: object) -> int:
    try:
        j = int(i)
    except TypeError as exc:
        raise TypeError(f"{source}: index {i!r} is not an integer.") from exc
    if not -n <= j < n:
        raise IndexError(f"{source}: index {j} is out of range for {n} structures.")
    return j % n


class RecordDataset(ABC):
    """Base of the file-backed datasets: index in memory, handles opened per process.

    Indexed formats implement :meth:`_data_files`, :meth:`_build_index` (arrays including
    ``natoms``) and :meth:`_use_index` (keep the arrays they need); the base loads or builds
    the index (:mod:`eqv2.data.index`). Formats that are their own index (the eqv2 store)
    override ``__init__``. All implement :meth:`_read` (decode record ``i``, raising
    :class:`DataError` naming the file and index) and, when they hold handles,
    :meth:`_close_handles`.
    """

    #: The format name :func:`eqv2.data.open_dataset` knows this class by.
    format: str = ""

    def __init__(
        self,
        path: str | os.PathLike[str],
        keys: LabelKeys | None = None,
        require: Iterable[str] = (),
        rebuild_index: bool = False,
    ) -> None:
        self._setup(path, keys, require)
        arrays, self.index_path = load_or_build(
            self.path, self.format, self._data_files(), self._build_index, rebuild_index
        )
        self.natoms = arrays["natoms"]
        self._use_index(arrays)

    def _setup(
        self, path: str | os.PathLike[str], keys: LabelKeys | None, require: Iterable[str]
    ) -> None:
        self.path = check_path(path)
        self.keys = keys or LabelKeys()
        self.require = tuple(require)
        self.natoms: np.ndarray = np.zeros(0, dtype=np.int64)
        self.nedges: np.ndarray | None = None
        self.index_path: Path | None = None
        self._handles: dict[Any, Any] = {}
        self._pid = os.getpid()

    def _data_files(self) -> list[Path]:
        """The files whose size and mtime the index depends on."""
        return [self.path]

    def _build_index(self) -> dict[str, np.ndarray]:
        """Scan the data once: ``natoms`` and what :meth:`_read` needs to find a record."""
        raise NotImplementedError

    def _use_index(self, arrays: dict[str, np.ndarray]) -> None:  # noqa: B027 - optional hook
        """Keep the index arrays :meth:`_read` needs (default: only ``natoms``)."""

    def _from_atoms(self, atoms: Any, i: int, **info: Any) -> Structure:
        """Record ``i`` from an ``ase.Atoms``, labels found under this dataset's keys."""
        k = self.keys
        return from_atoms(
            atoms,
            energy_key=k.energy_key,
            forces_key=k.forces_key,
            stress_key=k.stress_key,
            source=str(self.path),
            index=i,
            info=info,
        )

    def __len__(self) -> int:
        return len(self.natoms)

    def __getitem__(self, i: int) -> Structure:
        j = _position(i, len(self), self.path)
        s = self._read(j)
        if len(s) != self.natoms[j]:
            raise DataError(
                f"{self.path}, structure {j}: record has {len(s)} atoms but the index says "
                f"{self.natoms[j]}. Fix: the data changed without its index noticing; rebuild "
                f"it with: eqv2 data index --rebuild {self.path}"
            )
        return s.validate(self.require)

    def __iter__(self) -> Iterator[Structure]:
        for i in range(len(self)):
            yield self[i]

    def handles(self) -> dict[Any, Any]:
        """This process's open handles (emptied, not closed, after a fork: the parent owns them)."""
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        return self._handles

    @abstractmethod
    def _read(self, i: int) -> Structure:
        """Decode record ``i`` (``0 <= i < len(self)``) without validating it."""

    def _close_handles(self, handles: dict[Any, Any]) -> None:
        """Close this process's handles (default: call ``close()`` on each)."""
        for h in handles.values():
            h.close()

    def close(self) -> None:
        """Close open handles; the next access reopens them."""
        if self._pid == os.getpid() and self._handles:
            self._close_handles(self._handles)
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_pid"] = -1  # handles are reopened in the receiving process
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {len(self)} structures)"


class ListDataset:
    """An in-memory dataset over a list of :class:`Structure` records (or ``ase.Atoms``).

    ``ase.Atoms`` are converted with ``eqv2.data.from_atoms`` (default label keys). Every record
    is validated against ``require`` once, here.
    """

    def __init__(self, structures: Sequence[Any], require: Iterable[str] = ()) -> None:
        items = []
        for i, s in enumerate(structures):
            if not isinstance(s, Structure):
                if not hasattr(s, "get_positions"):
                    raise TypeError(
                        f"ListDataset: item {i} is a {type(s).__name__}, not a Structure or "
                        "ase.Atoms."
                    )
                s = from_atoms(s, index=i)
            items.append(s.validate(tuple(require)))
        self.structures: list[Structure] = items
        self.natoms = np.array([len(s) for s in items], dtype=np.int64)
        self.nedges: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.structures)

    def __getitem__(self, i: int) -> Structure:
        return self.structures[_position(i, len(self), "ListDataset")]

    def __iter__(self) -> Iterator[Structure]:
        return iter(self.structures)

    def close(self) -> None:
        """Nothing to close (for symmetry with file-backed datasets)."""

    def __repr__(self) -> str:
        return f"ListDataset({len(self)} structures)"
