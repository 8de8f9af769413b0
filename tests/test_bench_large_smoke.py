"""Smoke test: benchmarks/bench_large.py builds its slab and measures one tiny case."""

from __future__ import annotations

from tests.benchmark_module import load_benchmark


def test_slab_has_about_the_asked_atoms_and_adsorbates():
    bench = load_benchmark("bench_large")
    for target in (100, 1000):
        slab = bench.cu_slab_with_adsorbates(target)
        assert abs(len(slab) - target) < 0.2 * target
        symbols = slab.get_chemical_symbols()
        assert symbols.count("C") == symbols.count("O") > 0
        assert slab.pbc.all()


def test_tiny_case_with_chunks_and_stress():
    bench = load_benchmark("bench_large")
    # 0.05 MB chunks: the tiny model's edges are split into several chunks
    result = bench.run_case("tiny", 40, stress=True, chunking="0.05", threads=1)
    assert result["outputs"] == ["energy", "forces", "stress"] and result["finite"]
    assert result["edges"] > 0 and result["peak_rss_mb"] > 0 and result["model_cpu_s"] > 0
    assert "| tiny |" in bench.markdown_table([result])
