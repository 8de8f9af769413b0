"""Smoke test: benchmarks/materials_workflow.py runs end to end with the stand-in model."""

from __future__ import annotations

import json

import numpy as np

from tests.benchmark_module import load_benchmark


def test_materials_workflow_runs_and_reports(tmp_path, capsys):
    workflow = load_benchmark("materials_workflow")
    out = tmp_path / "workflow.json"
    assert workflow.main(["--steps", "3", "--pressure", "1.0", f"--out={out}"]) == 0
    data = json.loads(out.read_text())
    curve = data["energy_volume"]
    assert len(curve["volume_per_atom"]) == 9 and np.all(np.diff(curve["volume_per_atom"]) > 0)
    assert np.isfinite(curve["pressure_gpa"]).all()
    rows = data["relaxed"]
    assert len(rows) == 8 and len({r["atoms"] for r in rows}) >= 4
    for row in rows:
        assert "error" not in row and row["steps"] <= 3
        assert np.isfinite(
            [row["energy_per_atom"], row["volume_per_atom"], row["pressure_gpa"]]
        ).all()
    text = capsys.readouterr().out
    assert "E(V) of Cu-fcc" in text and "pressure 1.0 GPa" in text
