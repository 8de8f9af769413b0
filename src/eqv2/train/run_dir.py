"""A training run's output directory: never overwritten by accident, never shared by two runs.

* A directory that already holds a run (any of `RUN_FILES`) is refused unless the run is
  resumed (``--resume``) or replaced (``--overwrite``, which first deletes the old run's
  files, so no stale ``best.pt`` or plot stays beside the new ones).
* ``--resume`` needs ``checkpoint.pt``; a resumed run's model config must be the checkpoint's
  (checked before anything in the directory is written).
* `run_lock` holds an exclusive ``flock`` on ``OUT/.eqv2-train.lock`` for the whole run: a second
  training on the same directory stops at once with a message naming the holder. The kernel
  drops the lock when its process dies, even by ``kill -9``, so a crashed run can be resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["LOCK_NAME", "RUN_FILES", "RunDirectoryError", "check_run_dir", "run_lock"]

LOCK_NAME = ".eqv2-train.lock"
#: Files whose presence marks a directory as holding a training run.
RUN_FILES = ("checkpoint.pt", "best.pt", "final.pt", "log.csv", "metrics.json", "config.yaml")
#: Further outputs of a run, deleted with it by ``--overwrite``.
_OUTPUT_GLOBS = ("*.png", "events.out.tfevents.*")


class RunDirectoryError(ValueError):
    """The output directory cannot be used as asked (the message says why and what to do)."""


def check_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory that the run would damage (see the module docstring).

    Raises:
        RunDirectoryError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is
            set; ``resume`` without a checkpoint; both flags at once.
    """
    if resume and overwrite:
        raise RunDirectoryError(
            "--resume continues the run in --out and --overwrite deletes it: choose one."
        )
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        if not (out / "checkpoint.pt").exists():
            found = f" (it holds {', '.join(existing)})" if existing else ""
            raise RunDirectoryError(
                f"--resume: {out} has no checkpoint.pt{found}, so there is nothing to resume. "
                "Check --out, or drop --resume to start a new run there."
            )
        return
    if existing and not overwrite:
        raise RunDirectoryError(
            f"{out} already holds a training run ({', '.join(existing)}): refusing to overwrite "
            "it. Continue it with --resume, choose another --out, or pass --overwrite to "
            "delete it and start again."
        )


def clear_run(out: Path) -> list[Path]:
    """Delete a previous run's outputs in ``out`` (for ``--overwrite``); returns them."""
    removed = [out / name for name in RUN_FILES if (out / name).exists()]
    for pattern in _OUTPUT_GLOBS:
        removed.extend(sorted(out.glob(pattern)))
    for path in removed:
        path.unlink()
    return removed


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold the run directory's lock for the duration of the block.

    Raises:
        RunDirectoryError: another process holds it (its pid is named when known).
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    handle: Any = open(path, "a+")  # noqa: SIM115 - held open for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunDirectoryError(
                f"{out} is in use by another training (process {holder} holds {path}). Wait "
                "for it to finish or choose another --out."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
