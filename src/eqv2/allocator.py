"""Keep freed CPU memory for reuse instead of handing it back to the OS after every op.

EquiformerV2 on CPU allocates and frees edge-sized tensors (tens to hundreds of MB) many times
per forward pass. With glibc's defaults every allocation above the dynamic mmap threshold
(at most 32 MB) is a fresh ``mmap``, and every free above 128 kB at the top of the heap is
trimmed, so the next op pays one page fault per 4 kB page it touches: on the 31M-parameter
model that is 20 % of an inference step and a third of a training step (docs/benchmarks.md).
Raising both thresholds makes glibc serve those tensors from memory it already holds (after
a few steps: at first, torch's 64-byte-aligned chunks and the small allocations between them
fragment the heap, and some requests still take fresh pages).

The cost: the process keeps its peak heap resident until it exits (or `release_memory` is
called) instead of shrinking between calls; peak memory itself is unchanged. Only glibc on
Linux is tuned; elsewhere (macOS, musl, Windows) these functions do nothing.

Who tunes: this changes the whole process, so it is a choice made by whoever owns the process.
eqv2's own entry points make it (the ``eqv2`` command, `eqv2.train.run_training`, the
benchmarks); importing eqv2 or building a model never does. A library user who wants the
speed-up calls ``eqv2.tune_allocator()`` once. Set the environment variable
``EQV2_TUNE_MALLOC=0`` to opt out everywhere.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

#: mallopt parameter numbers (glibc <malloc.h>)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: mallopt takes an int: the largest value both thresholds accept
_THRESHOLD = 2**31 - 1

#: The same settings as glibc environment variables, for a process eqv2 does not run in (the
#: benchmarks give them to the reference)
GLIBC_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(_THRESHOLD),
}

_ENV = "EQV2_TUNE_MALLOC"
_tuned = False


def allocator_tuned() -> bool:
    """Whether `tune_allocator` has raised the thresholds in this process."""
    return _tuned


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt  # noqa: B018 - probe the symbol
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (idempotent).

    Called by eqv2's entry points (the ``eqv2`` command, `eqv2.train.run_training`, the
    benchmarks), never on import or model construction; call it once in your own program to
    get the same speed-up. Returns True when the thresholds are (or were already) raised,
    False when skipped: not glibc, or ``EQV2_TUNE_MALLOC=0``.
    """
    global _tuned
    if _tuned:
        return True
    if os.environ.get(_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    # mmap threshold first: setting it also freezes glibc's dynamic adjustment of both
    ok = libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1
    ok = libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1 and ok
    _tuned = ok
    return ok


def release_memory() -> bool:
    """Return the free memory the process holds to the OS (glibc ``malloc_trim``).

    Useful after a large prediction or training run in a long-lived process that goes on
    to do something else. Returns True when memory was released.
    """
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))
