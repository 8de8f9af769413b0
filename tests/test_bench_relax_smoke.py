"""Smoke test: benchmarks/bench_relax.py runs end to end on a tiny case."""

from __future__ import annotations

import json

import torch

from tests.benchmark_module import load_benchmark


def test_bench_relax_tiny_case(tmp_path, capsys):
    bench = load_benchmark("bench_relax")
    out = tmp_path / "relax.json"
    threads = torch.get_num_threads()
    argv = ["--n", "2", "--model", "tiny", "--sizes", "2x2", "--layers", "3", "--steps", "3"]
    try:
        assert (
            bench.main([*argv, "--threads", "1", "--max-atoms", "10", "100", f"--out={out}"]) == 0
        )
    finally:
        torch.set_num_threads(threads)
    data = json.loads(out.read_text())
    assert data["n_structures"] == 2 and [r["max_atoms"] for r in data["batched"]] == [10, 100]
    one_by_one, together = data["batched"]
    assert one_by_one["model_calls"] == one_by_one["evaluations"] == data["sequential_evaluations"]
    assert together["model_calls"] < together["evaluations"]
    assert one_by_one["max_abs_dE"] < 1e-5  # alone, the engine takes ASE's path
    assert "speed-up" in capsys.readouterr().out


def test_bench_relax_cell_case(tmp_path):
    bench = load_benchmark("bench_relax")
    out = tmp_path / "relax.json"
    threads = torch.get_num_threads()
    argv = ["--cell", "--n", "3", "--model", "tiny", "--optimizer", "fire", "--steps", "4"]
    try:
        assert bench.main([*argv, "--threads", "1", "--max-atoms", "1", "100", f"--out={out}"]) == 0
    finally:
        torch.set_num_threads(threads)
    data = json.loads(out.read_text())
    assert data["cell"] and data["n_structures"] == 3 and data["optimizer"] == "fire"
    one_by_one, together = data["batched"]
    # one model evaluation per step on both sides (ASE's calculator gives stress with forces)
    assert one_by_one["model_calls"] == one_by_one["evaluations"] == data["sequential_evaluations"]
    assert together["model_calls"] < together["evaluations"]
    assert one_by_one["max_abs_dE"] < 1e-8 and together["max_abs_dE"] < 1e-8  # FIRE: ASE's path
