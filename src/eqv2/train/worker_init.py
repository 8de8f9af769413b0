"""What each DataLoader worker process does first: die with its parent, seed its streams.

A forked worker inherits the training process's open files, among them the run directory's
lock (`eqv2.train.run_dir.run_lock`). Orphaned by a ``kill -9`` of the training process, a
worker can block for ever flushing a batch nobody reads, holding the lock, so ``--resume`` would
be refused; on Linux the kernel kills it with its parent instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["WorkerInit", "die_with_parent"]

#: Linux's ``prctl`` option that sends the calling process a signal when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this (worker) process die with its ``parent`` process, also after ``kill -9``.

    Linux only (elsewhere torch's own watchdog is all there is).
    """
    import ctypes
    import os
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):  # not Linux
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


@dataclass(frozen=True)
class WorkerInit:
    """A DataLoader ``worker_init_fn``: die with the process that started the loader, and (for
    training) seed numpy and ``random`` from the worker's torch seed."""

    parent: int
    seed: bool = True

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent)
        if self.seed:
            # torch seeds each worker from the loader's generator; numpy and random follow it
            seed = torch.initial_seed() % 2**32
            np.random.seed(seed)  # noqa: NPY002 - the legacy global stream, for code using it
            random.seed(seed)
