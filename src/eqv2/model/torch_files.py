"""Safe reading and atomic writing of ``torch.save`` files.

Loading never runs code from the file: :func:`safe_load` uses ``torch.load(weights_only=True)``,
PyTorch's restricted unpickler, which only rebuilds tensors and plain containers. Files that need
more (pickled classes, numpy scalars, or something malicious) are refused with
:class:`UnsafeCheckpointError` unless the caller says it trusts the file.

Loading also checks the file's integrity first (``torch.load`` does not): every member of a
zip-format file (what ``torch.save`` writes since PyTorch 1.6) must match the CRC-32 stored for
it, so flipped bits in tensor data are refused with :class:`CorruptCheckpointError` instead of
loading as wrong weights; a Git LFS pointer file in place of the checkpoint is named as such.

Writes (:func:`atomic_save`) go through a temporary file renamed over the target, so a crash
while saving leaves the previous file intact.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from eqv2.safe_io import atomic_write_path

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "PathLike",
    "UnsafeCheckpointError",
    "atomic_save",
    "remove_stale_temporaries",
    "safe_load",
    "verify_integrity",
]

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the fix."""


class UnsafeCheckpointError(CheckpointError):
    """The file needs full unpickling (which can run arbitrary code) to be read.

    Attributes:
        path: the file.
        rejected: the pickled global(s) the restricted unpickler refused, when known.
    """

    def __init__(self, message: str, path: Path, rejected: list[str]) -> None:
        super().__init__(message)
        self.path = path
        self.rejected = rejected


class CorruptCheckpointError(CheckpointError):
    """The file is empty, truncated, or not a PyTorch file at all."""


# -- loading --------------------------------------------------------------------------------------

_GLOBAL_RE = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*)")


_LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint file {str(path)!r} does not exist.")
    if path.is_dir():
        raise IsADirectoryError(
            f"Checkpoint path {str(path)!r} is a directory; pass the checkpoint file inside it."
        )
    if path.stat().st_size == 0:
        raise CorruptCheckpointError(
            f"Checkpoint file {str(path)!r} is empty (0 bytes): the save was probably "
            "interrupted. Use an earlier copy of the file."
        )
    with open(path, "rb") as handle:
        head = handle.read(len(_LFS_POINTER))
    if head == _LFS_POINTER:
        raise CorruptCheckpointError(
            f"Checkpoint file {str(path)!r} is a Git LFS pointer ({path.stat().st_size} bytes), "
            "not the checkpoint: the repository was cloned without its LFS objects. Fetch the "
            "file with 'git lfs pull' (after 'git lfs install'), or download it directly."
        )


def verify_integrity(path: PathLike) -> None:
    """Check every member of a zip-format ``torch.save`` file against its stored CRC-32.

    Files in PyTorch's legacy (pre-1.6, non-zip) format carry no checksums and pass unchecked.

    Raises:
        CorruptCheckpointError: a member's data do not match its checksum (flipped bits from a
            faulty disk, copy or download) or the zip structure itself is damaged.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every member; None when all CRC-32s match
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise _corrupt(path, exc) from exc
    if bad is not None:
        raise CorruptCheckpointError(
            f"Checkpoint file {str(path)!r} is damaged: the data of {bad!r} inside it do not "
            "match their CRC-32 checksum (bits changed on disk or in transfer). Re-copy or "
            "re-download the file, or use an earlier copy."
        )


def _scan_pickle(path: Path) -> tuple[bool, list[str]]:
    """Parse (never execute) the file's pickle: (is it a well-formed pickle, non-torch globals)."""
    import pickletools

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith("data.pkl")]
                if not names:
                    return False, []
                data = zf.read(names[0])
        else:
            data = path.read_bytes()
        found: list[str] = []
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - not a well-formed pickle
        return False, []
    safe_prefixes = ("torch.", "collections.OrderedDict", "builtins.set")
    return True, sorted({g for g in found if not g.startswith(safe_prefixes)})


def _corrupt(path: Path, exc: BaseException) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"Checkpoint file {str(path)!r} cannot be read as a PyTorch checkpoint: it is truncated, "
        f"corrupted, or not a file written by torch.save ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else 'no details'}). Re-copy or re-download "
        "the file, or use an earlier copy."
    )


def safe_load(path: PathLike, *, trust_pickle: bool = False, verify: bool = True) -> Any:
    """Load a ``torch.save`` file onto the CPU without running code from it.

    Args:
        path: the file.
        trust_pickle: if the restricted unpickler refuses the file, fall back to full
            unpickling. Only pass ``True`` for files whose origin you trust: a pickle can run
            arbitrary code while it loads.
        verify: check the file's CRC-32 checksums first (`verify_integrity`).

    Returns:
        Whatever was saved (usually a dict of tensors and plain values).

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: the file needs full unpickling and ``trust_pickle`` is False.
        CorruptCheckpointError: the file is empty, truncated, damaged (checksum mismatch), a
            Git LFS pointer, or not a PyTorch file.
    """
    path = Path(path)
    _check_readable(path)
    if verify:
        verify_integrity(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        if "Weights only load failed" not in message:
            raise _corrupt(path, exc) from exc
        if trust_pickle:
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except Exception as exc2:  # noqa: BLE001
                raise _corrupt(path, exc2) from exc2
        rejected = sorted(set(_GLOBAL_RE.findall(message)))
        if not rejected:
            well_formed, rejected = _scan_pickle(path)
            if not well_formed:
                raise _corrupt(path, exc) from exc
        detail = message.split("WeightsUnpickler error:")[-1].strip().splitlines()
        what = (
            "it refers to " + ", ".join(repr(g) for g in rejected)
            if rejected
            else "it uses pickle features the restricted unpickler does not allow"
            + (f" ({detail[0]})" if "WeightsUnpickler error:" in message and detail else "")
        )
        raise UnsafeCheckpointError(
            f"Refused to load {str(path)!r}: loading it would need full unpickling, which can "
            f"run arbitrary code, because {what}. Fix: re-save the file with only tensors and "
            "plain Python values (dict, list, str, int, float, bool, None), e.g. load it once in "
            "an environment you trust and torch.save a cleaned copy; or, only if you trust the "
            "file's origin, pass trust_pickle=True.",
            path,
            rejected,
        ) from exc
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise _corrupt(path, exc) from exc


# -- atomic writes --------------------------------------------------------------------------------


#: A legacy temporary file (no owner in its name) older than this is a crash's leftover.
_LEGACY_TEMP_AGE_S = 600.0


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname().split(".")[0]) or "host"


def _temp_suffix() -> str:
    """``.eqv2-HOST-PID.tmp``: names the writer so a later write can tell a crash's leftover."""
    return f".eqv2-{_host()}-{os.getpid()}.tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: PathLike) -> list[Path]:
    """Delete the temporary files a crashed `atomic_save` of ``path`` left beside it.

    Only eqv2's own names are touched: ``.NAME.XXXXXXXX.eqv2-HOST-PID.tmp`` whose process on
    this host is gone, and the older untagged ``.NAME.XXXXXXXX.tmp`` once it is more than 10
    minutes old. A live writer's file, another host's file and any other file stay.

    Returns:
        The files removed.
    """
    path = Path(path)
    pattern = re.compile(
        rf"^\.{re.escape(path.name)}\.[a-z0-9_]{{8}}(?:\.eqv2-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+))?\.tmp$"
    )
    removed: list[Path] = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match is None or not candidate.is_file():
            continue
        try:
            if match["pid"] is not None:
                stale = match["host"] == _host() and not _alive(int(match["pid"]))
            else:
                stale = time.time() - candidate.stat().st_mtime > _LEGACY_TEMP_AGE_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # raced with another cleanup, or not ours to delete
            continue
    return removed


def atomic_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically.

    The data go to a temporary file in the same directory, which is flushed, fsynced and then
    renamed over ``path`` (``os.replace``), so readers see either the old file or the complete
    new one. On any error the temporary file is removed and the old file is left untouched.
    Temporary files that a crashed earlier save of ``path`` left are removed first
    (`remove_stale_temporaries`).
    """
    path = Path(path)
    remove_stale_temporaries(path)
    with atomic_write_path(path, suffix=_temp_suffix()) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
    return path
