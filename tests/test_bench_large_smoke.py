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
    result = bench.run_case(
        "tiny", 40, stress=True, chunking="0.05", threads=1, min_time=0.0, gemm_size=256,
        min_calls=2,
    )  # fmt: skip
    assert result["outputs"] == ["energy", "forces", "stress"] and result["finite"]
    assert result["edges"] > 0 and result["peak_rss_mb"] > 0 and result["model_cpu_s"] > 0
    assert result["calls"] == 2 and result["edges_per_atom"] == result["edges"] / result["atoms"]
    assert result["mflop_per_atom"] > 0 and 0 < result["peak_fraction"] < 1.5
    assert 0 < result["cpu_peak_fraction"] < 1.5
    table = bench.markdown_table([result])
    assert "| tiny |" in table and "| fraction of peak |" in table


def test_memory_extrapolation_and_flatness():
    bench = load_benchmark("bench_large")
    small = {"atoms": 1000, "rss_before_model_mb": 400.0, "peak_rss_mb": 900.0}
    # 500 MB above the baseline for 1,000 atoms -> 5,000 MB for 10,000
    assert bench.predicted_peak_mb(small, 10_000) == 5400.0
    results = [{"ms_per_atom": 2.0}, {"ms_per_atom": 2.3}, {"ms_per_atom": 2.1}]
    assert abs(bench.flatness(results) - 1.15) < 1e-12


def test_case_over_the_memory_limit_is_skipped(capsys, monkeypatch):
    """Sizes run smallest first; the next is skipped when its extrapolated peak is too big."""
    bench = load_benchmark("bench_large")
    ran = []

    class Done:
        returncode = 0

        def __init__(self, cmd, **_):
            atoms = bench.json.loads(cmd[cmd.index("--case") + 1])[1]
            ran.append(atoms)
            result = {"atoms": atoms, "rss_before_model_mb": 300.0, "peak_rss_mb": 1300.0}
            self.stdout = "RESULT " + bench.json.dumps(result)

    monkeypatch.setattr(bench.subprocess, "run", Done)
    monkeypatch.setattr(bench, "markdown_table", lambda results: "table")
    assert bench.main(["--config", "tiny", "--atoms", "1000", "100", "--max-rss-mb", "5000"]) == 0
    assert ran == [100]  # 1,000 atoms extrapolates to 300 + 1000 * 10 MB > 5,000 MB
    assert "skipped 1000 atoms (chunking auto)" in capsys.readouterr().out
