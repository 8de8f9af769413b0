"""eqv2.model.compile: dynamic-shape compilation without a recompile per size, and the fallback.

A small graph-dict module stands in for the model (tracing EquiformerV2 takes minutes of CPU;
benchmarks/bench_compile.py measures that); the "eager" backend traces without generating code.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from eqv2.model import compile as compile_module
from eqv2.model.compile import CompiledInference, compile_inference, compile_unavailable


class GraphModule(nn.Module):
    """Per-atom linear map summed per structure: the shape pattern of a potential."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        per_atom = self.lin(graph["x"])
        energy = per_atom.new_zeros(int(graph["natoms"].shape[0]))
        return {"energy": energy.index_add(0, graph["batch"], per_atom.sum(1)), "forces": per_atom}


def graph(num_atoms: int, num_structures: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(num_atoms)
    return {
        "x": torch.randn(num_atoms, 4, generator=gen),
        "batch": torch.arange(num_atoms) % num_structures,
        "natoms": torch.ones(num_structures),
    }


def test_one_compile_serves_five_sizes():
    module = GraphModule().eval()
    compiled = compile_inference(module, backend="eager")
    for n in (5, 9, 17, 40, 123):
        g = graph(n)
        with torch.inference_mode():
            got, want = compiled(g), module(g)
        torch.testing.assert_close(got["energy"], want["energy"])
        torch.testing.assert_close(got["forces"], want["forces"])
    assert compiled.compiled and compiled.fallback_reason is None
    assert compiled.compiles == 1  # dynamic sizes: no recompile for a new atom count


def test_compiler_failure_falls_back_to_eager_with_the_reason():
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no code generator here")

    module = GraphModule().eval()
    compiled = CompiledInference(module, backend=broken_backend)
    g = graph(7)
    with pytest.warns(UserWarning, match="torch.compile failed .*no code generator here"):
        got = compiled(g)
    torch.testing.assert_close(got["energy"], module(g)["energy"])
    assert not compiled.compiled and "no code generator here" in compiled.fallback_reason
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; later calls run eager silently
        compiled(graph(9))


def test_model_errors_are_not_swallowed():
    compiled = compile_inference(GraphModule(), backend="eager")
    bad = graph(6)
    bad["x"] = torch.randn(6, 5)  # wrong feature size: the model's own error
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning: the input was wrong, not compile
        with pytest.raises(RuntimeError, match="shapes cannot be multiplied|size mismatch|mat1"):
            compiled(bad)
    assert compiled.compiled and compiled.fallback_reason is None


def test_unavailable_compiler_is_named_and_eager_runs(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compile_module.shutil, "which", lambda name: None)
    reason = compile_unavailable("inductor", "cpu")
    assert reason is not None and "C++ compiler" in reason and "g++" in reason
    assert compile_unavailable("inductor", "cuda") is None  # GPU code needs no C++ compiler
    module = GraphModule().eval()
    with pytest.warns(UserWarning, match="running eager: .*C\\+\\+ compiler"):
        compiled = compile_inference(module)
    g = graph(5)
    torch.testing.assert_close(compiled(g)["energy"], module(g)["energy"])
    assert not compiled.compiled and compiled.compiles == 0


def test_unknown_backend_is_named():
    reason = compile_unavailable("indcutor")
    assert reason is not None and "unknown torch.compile backend 'indcutor'" in reason
    assert "inductor" in reason
