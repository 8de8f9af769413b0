"""Random access to extxyz (and plain xyz) files through an index of byte offsets.

An xyz frame is a line with the atom count ``n``, a comment line (extxyz keeps the cell, pbc
and per-structure labels there) and ``n`` atom lines. Scanning those counts once gives each
frame's byte range and atom count without parsing any atom; reading frame ``i`` then seeks to
its offset and parses that frame alone with ASE's extxyz reader.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from eqv2.data._common import check_path
from eqv2.data.dataset import RecordDataset
from eqv2.data.errors import DataError, where
from eqv2.data.records import Structure

__all__ = ["ExtxyzDataset", "scan_extxyz"]


def scan_extxyz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``offsets`` ((N+1,) byte offsets: frame i is ``[offsets[i], offsets[i+1])``) and
    ``natoms`` ((N,)) of an xyz/extxyz file.

    Raises:
        DataError: empty file, a count line that is not an integer, or a truncated last frame.
    """
    p = check_path(path)
    offsets: list[int] = []
    natoms: list[int] = []
    pos = 0
    line_no = 0
    with open(p, "rb") as f:
        while True:
            line = f.readline()
            if not line:
                break
            line_no += 1
            if not line.strip():  # blank lines between or after frames
                pos += len(line)
                continue
            try:
                n = int(line)
            except ValueError:
                raise DataError(
                    f"{where(p, len(natoms))}: line {line_no} should give the frame's number of "
                    f"atoms but reads {line[:60].decode('utf-8', 'replace')!r}. Fix: the file is "
                    "not (ext)xyz, or the previous frame has more atom lines than its count."
                ) from None
            if n < 0:
                raise DataError(f"{where(p, len(natoms))}: line {line_no} gives {n} atoms.")
            offsets.append(pos)
            natoms.append(n)
            pos += len(line)
            for k in range(n + 1):
                rest = f.readline()
                if not rest:
                    raise DataError(
                        f"{where(p, len(natoms) - 1)}: the file ends after {max(k - 1, 0)} of "
                        f"the frame's {n} atom lines: it is truncated. Fix: re-export or "
                        "re-download it (or drop the incomplete last frame)."
                    )
                pos += len(rest)
            line_no += n + 1
    if not natoms:
        what = "is empty" if pos == 0 else "holds no structures"
        raise DataError(f"{p}: file {what}. Fix: point at a file with structures.")
    offsets.append(pos)
    return {
        "offsets": np.asarray(offsets, dtype=np.int64),
        "natoms": np.asarray(natoms, dtype=np.int64),
    }


class ExtxyzDataset(RecordDataset):
    """An extxyz/xyz file as a random-access dataset (see the module docstring)."""

    format = "extxyz"

    def _build_index(self) -> dict[str, np.ndarray]:
        return scan_extxyz(self.path)

    def _use_index(self, arrays: dict[str, np.ndarray]) -> None:
        self.offsets: np.ndarray = arrays["offsets"]

    def _file(self) -> Any:
        h = self.handles()
        if "file" not in h:
            h["file"] = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        return h["file"]

    def _read(self, i: int) -> Structure:
        import ase.io

        f = self._file()
        f.seek(int(self.offsets[i]))
        raw = f.read(int(self.offsets[i + 1] - self.offsets[i]))
        try:
            atoms = ase.io.read(io.StringIO(raw.decode("utf-8")), format="extxyz")
        except Exception as exc:  # noqa: BLE001 - ASE raises many types on bad frames
            raise DataError(
                f"{where(self.path, i)}: ASE could not parse this frame ({type(exc).__name__}: "
                f"{exc}). Fix: correct the frame, or rebuild the index if the file changed "
                f"(eqv2 data index --rebuild {self.path})."
            ) from exc
        return self._from_atoms(atoms, i)
