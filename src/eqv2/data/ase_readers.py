"""Readers for ASE-readable files (extxyz and any format ``ase.io.read`` knows) and ASE databases.

Labels are found by :func:`eqv2.data.records.from_atoms` (``info``/``arrays`` under the given
key, then calculator results; aliases such as ``REF_energy`` only with the default keys).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from eqv2.data._common import Index, check_path, select
from eqv2.data.errors import DataError, where
from eqv2.data.records import Structure, from_atoms

__all__ = ["iter_ase", "read_ase"]


def iter_ase(
    path: str | os.PathLike[str],
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    index: Index = ":",
    require: Iterable[str] = (),
    format: str | None = None,
) -> Iterator[Structure]:
    """Yield structures from an extxyz (or any ``ase.io``-readable) file.

    With ``index=":"`` the file is streamed frame by frame (``ase.io.iread``), so converting a
    large file does not hold it in memory; other indices read the whole file first.
    ``info["index"]`` is each structure's position in the file. ``format`` is passed to
    ``ase.io`` (guessed from the suffix when ``None``).

    Raises:
        DataError: missing or empty file, unparsable content, or a structure failing
            :meth:`Structure.validate` (e.g. a required label absent).
    """
    import ase.io

    p = check_path(path)
    require = tuple(require)
    if p.stat().st_size == 0:
        raise DataError(f"{p}: file is empty. Fix: point at a file with structures.")

    def fail(i: int | None, exc: Exception) -> DataError:
        return DataError(
            f"{where(p, i)}: ASE could not read the file ({type(exc).__name__}: {exc}). "
            "Fix: check its format (pass format=... if the suffix is misleading) and content."
        )

    def convert(atoms: Any, i: int) -> Structure:
        return from_atoms(
            atoms,
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
            source=str(p),
            index=i,
        ).validate(require)

    if index in (":", slice(None)):
        i = 0
        frames = ase.io.iread(p, index=":", format=format)
        while True:
            try:
                atoms = next(frames)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - ASE raises many types on bad files
                raise fail(i, exc) from exc
            yield convert(atoms, i)
            i += 1
        if i == 0:
            raise DataError(f"{p}: file holds no structures. Fix: point at a file with them.")
        return
    try:
        frames = ase.io.read(p, index=":", format=format)
    except Exception as exc:  # noqa: BLE001 - ASE raises many types on bad files
        raise fail(None, exc) from exc
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise DataError(f"{p}: file holds no structures. Fix: point at a file with them.")
    for i in select(len(frames), index, p):
        yield convert(frames[i], i)


def read_ase(path: str | os.PathLike[str], **kwargs: Any) -> list[Structure]:
    """All selected structures of an ASE-readable file as a list (see :func:`iter_ase`)."""
    return list(iter_ase(path, **kwargs))
