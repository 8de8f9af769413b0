"""Caching of constant tensors that is safe under ``torch.inference_mode``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def cached_constant(fn: F) -> F:
    """``functools.cache`` whose values are always ordinary tensors.

    A tensor first built inside ``torch.inference_mode`` is an inference tensor and may never
    be used by autograd later; building cached constants with inference mode switched off keeps
    one cache valid for inference and training alike.
    """

    @functools.cache
    def build(*args, **kwargs):
        with torch.inference_mode(False):
            return fn(*args, **kwargs)

    functools.update_wrapper(build, fn)
    return build  # type: ignore[return-value]
