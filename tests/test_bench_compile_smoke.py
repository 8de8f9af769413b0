"""benchmarks/bench_compile.py: its table (a compile of the model itself takes CPU-minutes and
is the benchmark's job; eqv2.model.compile is tested in tests/model/test_compile.py)."""

from __future__ import annotations

from tests.benchmark_module import load_benchmark


def test_table_shows_recompiles_and_the_cpu_ratio():
    bench = load_benchmark("bench_compile")
    row = dict(atoms=42, edges=335, first_call_wall_s=600.0, first_call_cpu_s=62.0, new_graphs=36,
               graphs_so_far=36, compiled_cpu_s=0.01, eager_cpu_s=0.02, speedup_cpu=2.0,
               max_force_diff=4e-7)  # fmt: skip
    second = dict(row, atoms=72, new_graphs=0, first_call_cpu_s=0.1)
    table = bench.markdown_table({"rows": [row, second]}).splitlines()
    assert len(table) == 4 and "new graphs" in table[0]
    assert table[2].startswith("| 42 | 335 | 600.0 / 62.0 | 36 | 36 | 0.010 | 0.020 | 2.00× |")
    assert table[3].startswith("| 72 | 335 | 600.0 / 0.1 | 0 | 36 |")
