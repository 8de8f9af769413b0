"""Smoke test: benchmarks/bench_torchsim_md.py runs one tiny case end to end."""

from __future__ import annotations

import json

import pytest

from tests.benchmark_module import load_benchmark
from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)
from tests.simulate.torchsim.conftest import SKIP_REASON

pytest.importorskip("torch_sim", reason=SKIP_REASON)


def test_bench_torchsim_md_tiny(tmp_path, capsys):
    bench = load_benchmark("bench_torchsim_md")
    out = tmp_path / "b.json"
    argv = ["--size", "tiny", "--systems", "2", "--steps", "1", "--repeats", "1", "--threads", "1"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["way"] for r in data["results"]] == ["batched", "torchsim_single", "ase_single"]
    assert data["max_abs_dE_between_ways_eV"] < 1e-9
    assert "| batched |" in capsys.readouterr().out
