"""Smoke test: benchmarks/bench_adsorbml.py runs at a tiny size (given or freshly trained model)."""

from __future__ import annotations

import json

import pytest

from eqv2.model.loading import save_model
from tests.benchmark_module import load_benchmark
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    make_potential,
    one_thread,
)


def _load():
    return load_benchmark("bench_adsorbml")


def _check(out):
    data = json.loads(out.read_text())
    assert data["settings"]["systems"] == 1 and data["system_names"] == ["Cu(111)+*O"]
    for strategy in ("ml+sp", "ml+rx"):
        rows = data["aggregate"][strategy]
        assert [r["k"] for r in rows] == [1, 2, 3, 4, 5]
        assert all(0.0 <= r["success_rate"] <= 1.0 for r in rows)
    assert data["timings_s"]["ml_relax"] > 0 and "| ML+SP | 1 |" in data["markdown"]


def test_bench_adsorbml_tiny_with_checkpoint(tmp_path):
    checkpoint = save_model(make_potential(), tmp_path / "tiny.pt")
    out = tmp_path / "adsorbml.json"
    argv = ["--tiny", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert _load().main(argv + ["--work", str(tmp_path / "work")]) == 0
    _check(out)


@pytest.mark.slow
def test_bench_adsorbml_tiny_trains_its_model(tmp_path):
    out = tmp_path / "adsorbml.json"
    assert _load().main(["--tiny", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    _check(out)
    assert (tmp_path / "work" / "run" / "final.pt").is_file()
