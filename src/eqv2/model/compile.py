"""``torch.compile`` of a model's inference path, with dynamic sizes and a clean fallback.

:func:`compile_inference` wraps a module (an :class:`~eqv2.model.EquiformerV2`, or any module
taking a graph dict) in :class:`CompiledInference`: calls go through ``torch.compile(module,
dynamic=True)`` so that atom and edge counts are symbolic (one compiled graph serves many
structure sizes instead of one compile per size), and the wrapper counts the graphs the backend
compiles (:attr:`CompiledInference.compiles`: a recompile for a new size shows up there).

Compilation can fail where eager runs: no C++ compiler for the CPU backend, an op the compiler
does not support, a torch build without ``torch.compile``. Errors of the compiler surface at the
first call, not at ``torch.compile``; the wrapper then warns once, naming the reason, and runs
the eager module from then on (:attr:`CompiledInference.fallback_reason`). Errors of the model
itself (bad input) are not swallowed: the eager module raises them again, and compilation stays
on.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

#: Backends that generate C++ on the CPU and therefore need a compiler on PATH.
_NEEDS_CXX = frozenset({"inductor"})
#: Compilers torch's CPU code generation looks for (it honours $CXX first).
_CXX_CANDIDATES = ("c++", "g++", "clang++")


Backend = str | Callable[..., Any]


def compile_unavailable(backend: Backend = "inductor", device: str = "cpu") -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot run here (None when it can, as far as can
    be told without compiling)."""
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile (torch >= 2.0 needed)"
    if callable(backend):
        return None
    if backend not in torch.compiler.list_backends(exclude_tags=()):
        known = ", ".join(torch.compiler.list_backends())
        return f"unknown torch.compile backend {backend!r} (known: {known})"
    if backend in _NEEDS_CXX and device == "cpu":
        wanted = [os.environ["CXX"]] if os.environ.get("CXX") else list(_CXX_CANDIDATES)
        if not any(shutil.which(c) for c in wanted):
            return (
                f"the {backend} backend needs a C++ compiler on the CPU and none of "
                f"{', '.join(wanted)} is on PATH (install g++ or set $CXX)"
            )
    return None


def _compiler_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the compiler (dynamo/inductor/fx), not from the model's code
    (dynamo's own exception classes live in ``torch._dynamo.exc``: the module test covers them)."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "torch.fx"))


class CompiledInference(nn.Module):
    """A module called through ``torch.compile(dynamic=True)``, falling back to eager.

    Args:
        module: the eager module (kept as :attr:`module`; its parameters are shared).
        backend: a ``torch.compile`` backend name ("inductor", the default; "eager" traces
            only, for checking graph breaks and recompiles without generating code) or a
            backend callable.
        dynamic: mark sizes symbolic from the first call (True), as ``torch.compile``.
        mode: ``torch.compile``'s mode (None, "reduce-overhead", "max-autotune", ...).
    """

    def __init__(
        self,
        module: nn.Module,
        backend: Backend = "inductor",
        dynamic: bool = True,
        mode: str | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.backend = backend if isinstance(backend, str) else getattr(backend, "__name__", "?")
        self.compiles = 0
        self.fallback_reason: str | None = compile_unavailable(backend, _device_of(module))
        self._compiled: Callable[..., Any] | None = None
        if self.fallback_reason is None:
            self._compiled = torch.compile(
                module, backend=self._counting_backend(backend), dynamic=dynamic, mode=mode
            )
        else:
            warnings.warn(
                f"torch.compile unavailable, running eager: {self.fallback_reason}", stacklevel=3
            )

    def _counting_backend(self, backend: Backend) -> Callable[..., Any]:
        from torch._dynamo import lookup_backend

        inner = lookup_backend(backend) if isinstance(backend, str) else backend

        def backend(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
            self.compiles += 1
            return inner(gm, example_inputs)

        return backend

    @property
    def compiled(self) -> bool:
        """Whether calls still go through the compiled module (no fallback happened)."""
        return self._compiled is not None

    def forward(self, graph: Mapping[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.module(graph, *args, **kwargs)
        try:
            return self._compiled(graph, *args, **kwargs)
        except Exception as exc:
            if not _compiler_error(exc):
                raise
            # bad input also fails while tracing (wrapped by dynamo): eager raises the model's
            # own error then, and compilation stays on for the next, valid, input
            out = self.module(graph, *args, **kwargs)
            self.fallback_reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            self._compiled = None
            warnings.warn(
                f"torch.compile failed ({self.fallback_reason}); running the eager model from "
                "now on",
                stacklevel=2,
            )
            return out


def _device_of(module: nn.Module) -> str:
    param = next(module.parameters(), None)
    return "cpu" if param is None else param.device.type


def compile_inference(
    module: nn.Module, backend: Backend = "inductor", mode: str | None = None
) -> CompiledInference:
    """``module`` (in eval mode) behind ``torch.compile(dynamic=True)`` with an eager fallback;
    see :class:`CompiledInference`. Call it under ``torch.inference_mode()`` or
    ``torch.no_grad()`` as the eager module."""
    return CompiledInference(module.eval(), backend=backend, dynamic=True, mode=mode)
