"""Smoke test: benchmarks/bench_amp.py times a tiny model with and without bf16 autocast."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_bench_amp_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_amp", REPO / "benchmarks" / "bench_amp.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_amp"] = bench
    spec.loader.exec_module(bench)
    assert bench.main(["--configs", "tiny", "--warmup", "0", "--runs", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[2].strip() for row in rows] == ["off", "bf16"]
