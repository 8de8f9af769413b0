"""Smoke test: benchmarks/bench_md.py runs one tiny case end to end."""

from __future__ import annotations

import json

from tests.benchmark_module import load_benchmark
from tests.simulate.relax.tiny_relax import one_thread  # noqa: F401 (autouse fixture)


def test_bench_md_tiny(tmp_path, capsys):
    bench = load_benchmark("bench_md")
    out = tmp_path / "md.json"
    argv = ["--size", "tiny", "--steps", "2", "--timesteps", "0.5", "--threads", "1"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["model"] for r in data["results"]] == ["tiny random (direct)", "tiny random (-dE/dx)"]
    assert all(r["ms_per_step"] > 0 for r in data["results"])
    assert "| tiny random (-dE/dx) | 0.5 |" in capsys.readouterr().out
