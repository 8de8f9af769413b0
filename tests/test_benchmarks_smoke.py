"""Smoke test: benchmarks/bench_model.py imports and times one tiny case end to end."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks" / "bench_model.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_model", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_model"] = module
    spec.loader.exec_module(module)
    return module


def test_bench_model_tiny_case(tmp_path):
    bench = _load()
    out = tmp_path / "bench.json"
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nprose kept\n")
    argv = ["--configs", "tiny", "--modes", "fwd", "--runs", "1", "--warmup", "0"]
    argv += ["--no-reference", "--wait-quiet=0", "--retry-busy=0", f"--out={out}"]
    argv += [f"--update-doc={doc}"]
    assert bench.main(argv) == 0
    data = json.loads(out.read_text())
    (result,) = data["results"]
    assert result["impl"] == "eqv2" and result["config"] == "tiny" and result["mode"] == "fwd"
    assert result["n_atoms"] == 269 and result["n_edges"] > 0
    assert result["median_ms"] > 0 and result["peak_rss_mb"] > 0
    assert "| tiny | fwd |" in data["markdown"]
    text = doc.read_text()
    assert "prose kept" in text and bench.DOC_BEGIN in text and "| tiny | fwd |" in text
    # regenerating replaces the block instead of appending another one
    bench.update_doc(doc, "new table")
    assert doc.read_text().count(bench.DOC_BEGIN) == 1 and "new table" in doc.read_text()


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
    ref_python = bench.os.environ.get("EQV2_REFERENCE_PYTHON", bench.DEFAULT_REFERENCE_PYTHON)
    tools = bench.DEFAULT_REFERENCE_TOOLS
    if not (bench.Path(ref_python).exists() and (tools / "eqv2_ref_common.py").exists()):
        pytest.skip("reference environment not found (set EQV2_REFERENCE_PYTHON)")
    bench.check_against_reference(ref_python, tools)
