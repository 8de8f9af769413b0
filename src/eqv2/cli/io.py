"""Inputs and outputs of the commands: any supported format in, output paths checked first.

Every command reads its structures through :func:`read_atoms` (eqv2's readers: extxyz and other
ASE formats, ASE db / aselmdb, OC20 LMDB file or shard directory, eqv2 store), so each format
works everywhere and a bad file gives eqv2's clear error. :func:`check_output` runs before any
model time is spent: an output that is an input (also through a symlink or another relative
path), a directory, or in a place that cannot be written is refused up front.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FORMATS_HELP",
    "InputStructures",
    "add_input_argument",
    "check_output",
    "read_atoms",
    "read_one",
]


#: What every command's input may be (for ``--help``).
FORMATS_HELP = "extxyz (or any ASE format), ASE db/aselmdb, OC20 LMDB file or directory, eqv2 store"


def add_input_argument(parser: Any) -> None:
    """The positional ``input`` of the commands that run a model on structures."""
    parser.add_argument("input", type=Path, help=f"structures: {FORMATS_HELP}")


def read_atoms(path: str | os.PathLike, *, what: str = "INPUT", index: Any = ":") -> list[Any]:
    """Every structure of ``path`` as ``ase.Atoms`` (reference labels on a calculator).

    ``what`` names the argument in messages. ``info`` gains ``source``, ``index`` and ``name``.

    Raises:
        FileNotFoundError / ValueError (``eqv2.data.DataError``): a missing, unreadable, empty or
            invalid input, named with the file and record.
    """
    from eqv2.data import read_structures, to_atoms

    structures = read_structures(path, index=index)
    if not structures:
        raise ValueError(f"{path} ({what}) holds no structures; give a file with at least one.")
    return [to_atoms(s) for s in structures]


class InputStructures(Sequence[Any]):
    """The structures of an input file as ``ase.Atoms``, read one at a time when indexed.

    Reads through ``eqv2.data.open_dataset`` (every supported format; extxyz, ASE db, OC20 LMDB
    and stores from an index, without holding the file in memory).

    Raises:
        FileNotFoundError / ValueError (``eqv2.data.DataError``): a missing, unreadable or empty
            input, or (when indexed) a bad record, named with the file and record.
    """

    def __init__(self, path: str | os.PathLike[str], *, what: str = "INPUT") -> None:
        from eqv2.data import open_dataset

        self.dataset = open_dataset(path)
        if len(self.dataset) == 0:
            raise ValueError(f"{path} ({what}) holds no structures; give a file with at least one.")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Any) -> Any:
        from eqv2.data import to_atoms

        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return to_atoms(self.dataset[int(index)])


def read_one(path: str | os.PathLike, index: int, *, flag: str, what: str = "INPUT") -> Any:
    """Structure ``index`` of ``path`` (negative counts from the end); ``flag`` names the
    option that chose it in messages. Only that structure is decoded (random access through
    the dataset's index), so one frame of a large LMDB or store is cheap and a bad record
    elsewhere in the file does not matter."""
    images = InputStructures(path, what=what)
    if not -len(images) <= index < len(images):
        raise ValueError(
            f"{flag} {index}: {os.fspath(path)} holds {len(images)} structures "
            f"(0...{len(images) - 1})."
        )
    return images[index % len(images)]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return a.resolve() == b.resolve()


def check_output(
    path: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (), *, flag: str = "-o"
) -> Path:
    """Refuse an output path before any work is done; return it as a ``Path``.

    Refused: an existing directory or a name ending in a separator (a file name is needed), the
    same file as one of ``inputs`` (writing it would destroy the input and its reference
    labels), a parent that is a file, and a directory where no file can be created.
    ``flag`` names the option in messages.

    Raises:
        ValueError: naming the flag, the path and the fix.
    """
    text = os.fspath(path)
    out = Path(text)
    if text.endswith((os.sep, "/")) or out.is_dir():
        raise ValueError(
            f"{flag} {text}: is a directory; give a file name, e.g. {out / 'output.extxyz'}."
        )
    for source in inputs:
        if _same_file(out, Path(source)):
            raise ValueError(
                f"{flag} {text} is the input file {os.fspath(source)}: writing it would "
                "overwrite the input and its reference labels. Give another output file."
            )
    parent = out.absolute().parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {text}: {existing} is a file, not a directory.")
    try:  # the only reliable test (permissions, read-only mounts, root): create a file there
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".eqv2-probe", dir=existing)
    except OSError as exc:
        raise ValueError(
            f"{flag} {text}: cannot write in {existing} ({exc.strerror or exc}). Choose a "
            "writable location."
        ) from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return out
