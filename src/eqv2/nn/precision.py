"""Numerics under mixed precision: which parts of the network stay in float32.

Training with ``torch.autocast(dtype=torch.bfloat16)`` runs matrix products in bfloat16 (8
significant bits). Reductions whose result sets the scale of everything after them — the
normalisations' mean squares and the attention softmax's sums — lose too much there, so
`full_precision` runs them in float32 with autocast switched off, as mixed-precision training
of transformers usually does. Outside autocast both helpers do nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable[..., torch.Tensor])


def autocast_dtype(tensor: torch.Tensor) -> torch.dtype | None:
    """The reduced dtype autocast uses on ``tensor``'s device, or None when autocast is off."""
    device = tensor.device.type
    try:
        if torch.is_autocast_enabled(device):
            return torch.get_autocast_dtype(device)
        return None
    except TypeError:  # torch < 2.4: per-device functions, no device argument
        if device == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None


def _to_float32(value):
    if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    return value


def full_precision(fn: F) -> F:
    """Decorate ``fn`` (a function or ``forward``) to run in float32 under autocast.

    Under autocast, reduced-precision floating tensor arguments are cast to float32 and ``fn``
    runs with autocast off, so its result is float32; otherwise ``fn`` is called unchanged.
    The device is read from the first tensor argument.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or autocast_dtype(first) is None:
            return fn(*args, **kwargs)
        with torch.autocast(first.device.type, enabled=False):
            return fn(*(_to_float32(a) for a in args), **kwargs)

    return wrapper  # type: ignore[return-value]
