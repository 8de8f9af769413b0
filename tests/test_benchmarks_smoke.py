"""Smoke tests: benchmarks/bench_model.py and bench_train.py time one tiny case end to end."""

from __future__ import annotations

import json

import pytest

from tests.benchmark_module import load_benchmark


def _load():
    return load_benchmark("bench_model")


def test_bench_model_tiny_case(tmp_path):
    bench = _load()
    out = tmp_path / "bench.json"
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nprose kept\n")
    argv = ["--configs", "tiny", "--modes", "fwd", "--runs", "3", "--warmup", "1"]
    argv += ["--no-reference", "--wait-quiet=0", "--retry-busy=0", f"--out={out}"]
    argv += [f"--update-doc={doc}", "--gemm-size=512", "--threads=1"]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert result["impl"] == "eqv2" and result["config"] == "tiny" and result["mode"] == "fwd"
    assert result["n_atoms"] == 269 and result["n_edges"] > 0
    assert result["median_ms"] > 0 and result["peak_rss_mb"] > 0
    assert "| tiny | fwd |" in data["markdown"]
    # the roofline columns: eqv2's own FLOP count, its rate and its fraction of the GEMM peak
    # measured in the same process
    assert result["gflop"] > 0 and result["gflops"] > 0
    assert result["gemm_peak_before_gflops"] > 0 and result["gemm_peak_after_gflops"] > 0
    assert 0 < result["peak_fraction"] < 1.5 and 0 < result["cpu_peak_fraction"] < 1.5
    assert result["gflops"] == pytest.approx(result["gflop"] / (result["model_ms"] / 1e3))
    assert "| fraction of peak |" in data["markdown"]
    text = doc.read_text()
    assert "prose kept" in text and bench.DOC_BEGIN in text and "| tiny | fwd |" in text
    # regenerating replaces the block instead of appending another one
    bench.update_doc(doc, "new table")
    assert doc.read_text().count(bench.DOC_BEGIN) == 1 and "new table" in doc.read_text()


def test_flop_count_and_gemm_peak():
    """count_flops counts a matmul's 2·n³ (forward) and its backward; the peak is a rate."""
    import torch

    bench = _load()
    a, b = torch.randn(64, 32, requires_grad=True), torch.randn(32, 16)
    assert bench.count_flops(lambda: a @ b) == 2 * 64 * 32 * 16
    # backward of a @ b with only a requiring grad: one more product of the same size
    assert bench.count_flops(lambda: (a @ b).sum().backward()) == 2 * (2 * 64 * 32 * 16)
    wall, cpu = bench.gemm_peak(size=256, repeats=2)
    assert wall > 0 and cpu > 0


def test_roofline_table_sits_beside_the_reference_ratios():
    bench = _load()
    ours = dict(impl="eqv2", config="small", mode="fwd", median_ms=500.0, model_ms=400.0)
    ours["cpu_per_wall_median"] = 2.0
    ours["model_cpu_ms"] = 800.0
    ours.update(bench.roofline(40 * 10**9, 400.0, 800.0, (150.0, 80.0), (200.0, 70.0)))
    assert ours["gflops"] == pytest.approx(100.0) and ours["peak_fraction"] == pytest.approx(0.5)
    assert ours["cpu_gflops"] == pytest.approx(50.0)
    assert ours["cpu_peak_fraction"] == pytest.approx(50.0 / 80.0)
    ref = dict(impl="reference", config="small", mode="fwd_nograd", median_ms=1500.0)
    ref["cpu_per_wall_median"] = 1.0
    tuned = dict(ref, impl="reference+malloc", mode="fwd", median_ms=750.0)
    table = bench.roofline_table([ours, ref, tuned])
    row = table.splitlines()[-1]
    assert row.startswith(
        "| small | fwd | 40.00 | 0.400 | 100.0 | 200.0 (150.0, 200.0) | 50.0 % | 0.800 | 62.5 %"
    )
    assert "3.00× (CPU 1.50×) fwd_nograd" in row and "1.50× (CPU 0.75×) fwd" in row
    # results saved before the roofline existed are left out, not a crash
    old = {k: v for k, v in ours.items() if k != "peak_fraction"}
    assert len(bench.roofline_table([old]).splitlines()) == 2


def test_configs_are_the_yaml_files_model_sections():
    """The benchmark models are read from configs/*.yaml (no Python copies of them)."""
    import yaml

    bench = _load()
    assert set(bench.CONFIGS) == {"small", "paper31m", "tiny"}
    assert bench.CONFIG_FILES["paper31m"].name == "oc20_31m.yaml"
    for name, path in bench.CONFIG_FILES.items():
        assert path.parent.parent.name == "configs" or path.parent.name == "configs"
        assert bench.CONFIGS[name] == yaml.safe_load(path.read_text())["model"]
    assert bench.CONFIGS["paper31m"]["num_layers"] == 8  # the paper's 31M model


def test_bad_config_file_is_named(tmp_path):
    bench = _load()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sphere_chanels: 8\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*sphere_chanels"):
        bench.read_model_config(bad)
    bad.write_text("train:\n  lr: 1.0\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: no 'model' section"):
        bench.read_model_config(bad)


def test_reference_is_found_only_through_the_environment_or_flag(monkeypatch, capsys):
    bench = _load()
    monkeypatch.delenv(bench.REFERENCE_PYTHON_ENV, raising=False)
    args = bench.parse_args(["--configs", "tiny"])
    assert args.reference_python is None
    assert not bench.select_reference(args, "bench_reference.py") and not args.with_reference
    bench.check_selected_reference(args)
    assert "skipped: no reference interpreter: set EQV2_REFERENCE_PYTHON" in capsys.readouterr().out
    monkeypatch.setenv(bench.REFERENCE_PYTHON_ENV, "/nonexistent/python")
    args = bench.parse_args(["--configs", "tiny"])
    assert args.reference_python == "/nonexistent/python"
    assert not bench.select_reference(args, "bench_reference.py")
    assert "/nonexistent/python does not exist" in args.reference_skipped
    args = bench.parse_args(["--reference-python", "/elsewhere/python"])
    assert args.reference_python == "/elsewhere/python"


def test_structures_match_reference_copy():
    """The ASE re-creation of the reference batch: 4 systems, 269 atoms, float32 cells."""
    import numpy as np

    bench = _load()
    structures = bench.oc20_like_batch_structures()
    assert [len(a) for a in structures] == [66, 66, 70, 67]
    for atoms in structures:
        cell = atoms.cell.array
        np.testing.assert_array_equal(cell, cell.astype(np.float32).astype(np.float64))
        assert atoms.pbc.all()


@pytest.mark.slow
def test_structures_identical_to_reference(tmp_path):
    """Bit-exact comparison with eqv2_ref_common (needs the reference environment)."""
    bench = _load()
    ref_python = bench.os.environ.get(bench.REFERENCE_PYTHON_ENV)
    tools = bench.DEFAULT_REFERENCE_TOOLS
    if not (ref_python and bench.Path(ref_python).exists()):
        pytest.skip(f"no reference environment (set {bench.REFERENCE_PYTHON_ENV})")
    if not (tools / "eqv2_ref_common.py").exists():
        pytest.skip(f"reference tools not found at {tools}")
    bench.check_against_reference(ref_python, tools)


def _load_train_bench():
    return load_benchmark("bench_train")


@pytest.mark.slow  # a subprocess that imports torch and eqv2
@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_bench_train_tiny_case(tmp_path, amp):
    """One eqv2 training step (Trainer.train_step) in a subprocess; the table lands in its own
    block of the doc, beside bench_model's."""
    bench = _load_train_bench()
    out, doc = tmp_path / "train.json", tmp_path / "bench.md"
    doc.write_text(f"# Benchmarks\n\n{_load().DOC_BEGIN}\nmodel table\n{_load().DOC_END}\n")
    argv = ["--configs", "tiny", "--runs", "1", "--warmup", "0", "--no-reference",
            "--wait-quiet=0", "--retry-busy=0", f"--out={out}", f"--update-doc={doc}",
            f"--amp={amp}"]  # fmt: skip
    assert bench.main(argv) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["impl"] == "eqv2" and result["config"] == "tiny" and result["amp"] == amp
    assert ("train.amp bf16" in doc.read_text()) == (amp == "bf16")
    assert result["n_atoms"] == 269 and result["n_structures"] == 4 and result["n_edges"] > 0
    assert result["median_ms"] > 0 and result["peak_rss_mb"] > 0 and result["check_loss"] > 0
    text = doc.read_text()
    assert "model table" in text and bench.DOC_BEGIN in text and "| tiny | 31,514 |" in text


def test_bench_train_recipe_and_batch_check():
    bench = _load_train_bench()
    recipe = bench.read_recipe()
    assert (recipe["energy_coefficient"], recipe["force_coefficient"]) == (4, 100)
    assert recipe["grad_clip"] == 100 and recipe["ema_decay"] == 0.999
    e1, f1 = bench.batch_targets(4, 269)
    e2, f2 = bench.batch_targets(4, 269)
    assert bench.fingerprint(e1, f1) == bench.fingerprint(e2, f2)
    ours = dict(n_structures=4, n_atoms=269, n_edges=5379, targets="abc", n_params=10,
                check_loss=160.0, check_outputs=[0.1, 0.2, 2.3], shared_weights=True)  # fmt: skip
    assert bench.batch_check(ours, dict(ours)) == "same"
    assert "n_edges 5379 vs 5380" in bench.batch_check(ours, {**ours, "n_edges": 5380})
    assert "eval outputs differ" in bench.batch_check(
        ours, {**ours, "check_outputs": [0.1, 0.3, 2.3]}
    )
