"""OMat24-style and DeNS checkpoints with a stress head reproduce fairchem 1.10's OCPCalculator.

Fixtures: ``../shared/reference/checkpoints/{omat,dens}_stress_small.pt`` and their
``*.expected.json``; tolerances are the checkpoint README's (measured noise floors).
"""

from __future__ import annotations

import functools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import eqv2
from eqv2.fairchem import is_fairchem_buffer, read_fairchem_checkpoint
from eqv2.model.checkpoint import CheckpointError, safe_load
from tests.model.stress_cases import FAMILIES, expected, max_errors, structures


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, checkpoints_dir):
    exp = expected(checkpoints_dir, request.param)
    return request.param, checkpoints_dir / f"{request.param}_stress_small.pt", exp


@functools.cache
def _model(path, use_ema=False, dtype=torch.float32):
    return eqv2.load_model(path, use_ema=use_ema, dtype=dtype)


@functools.cache
def _predictions(path, use_ema=False, dtype=torch.float32):
    """predict(stress=True) on the fixture's 9 structures (each model evaluated once)."""
    exp = json.loads(Path(str(path).replace(".pt", ".expected.json")).read_text())
    return _model(path, use_ema, dtype).predict(structures(exp), stress=True)


@pytest.mark.parametrize("use_ema", [False, True])
def test_float32_matches_ocpcalculator(family, use_ema):
    _, path, exp = family
    assert _model(path, use_ema).has_stress_head
    alt = exp["alternatives"]
    if use_ema:
        ref = [alt[f"{k}_with_ema_weights"] for k in ("energy", "forces", "stress")]
    else:
        ref = [exp["energy"], exp["forces"], exp["stress"]]
    d_e, d_f, d_s = max_errors(_predictions(path, use_ema), *ref)
    assert (d_e <= 1e-4 + 1e-6 * np.abs(ref[0])).all(), d_e
    assert (d_f <= 1e-5).all(), d_f
    assert (d_s <= 1e-6).all(), d_s


def _fairchem_edge_vectors(graph: dict) -> torch.Tensor:
    """fairchem's edge vectors: the periodic shift ``offsets @ cell`` is rounded to float32
    even in its float64 run (measured: this alone moves the triclinic cells' forces by 2e-7)."""
    src, dst = graph["edge_index"]
    cell = graph["cell"][graph["batch"][dst]]
    shift = torch.bmm(graph["cell_offsets"].float().unsqueeze(1), cell.float()).squeeze(1)
    return graph["pos"][src] - graph["pos"][dst] + shift.double()


@pytest.mark.parametrize("use_ema", [False, True])
def test_float64_matches_fairchem_float64(family, use_ema):
    _, path, exp = family
    model = _model(path, use_ema, torch.float64)
    suffix = "with_ema_weights_f64" if use_ema else "f64_same_weights"
    alt = exp["alternatives"]
    ref = [alt[f"{k}_{suffix}"] for k in ("energy", "forces", "stress")]
    atoms = structures(exp)
    graph = model.build_graph(atoms)  # one batch: the graphs are per structure anyway
    graph["edge_vec"] = _fairchem_edge_vectors(graph)
    out = model.compute(graph, stress=True)
    bounds = np.cumsum([0] + [len(a) for a in atoms])
    results = [
        {"energy": out["energy"][i], "forces": out["forces"][a:b], "stress": out["stress"][i]}
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]
    d_e, d_f, d_s = max_errors(results, *ref)
    assert (d_e <= 1e-6 + 1e-9 * np.abs(ref[0])).all(), d_e
    assert (d_f <= 1e-7).all(), d_f
    assert (d_s <= 1e-9).all(), d_s


def test_float64_agrees_with_float32(family):
    _, path, _ = family
    f32, f64 = _predictions(path), _predictions(path, dtype=torch.float64)
    d_e, d_f, d_s = max_errors(
        f32, [r["energy"] for r in f64], [r["forces"] for r in f64], [r["stress"] for r in f64]
    )
    # float32 round-off: ulp(|E| ≤ 266 eV) = 3e-5; forces and stress are O(0.1) and O(0.01)
    assert (d_e <= 4 * np.abs(np.spacing(np.float32([r["energy"] for r in f64])))).all(), d_e
    assert (d_f <= 1e-6).all(), d_f
    assert (d_s <= 1e-7).all(), d_s


def test_ema_weights_are_distinguished(family):
    _, path, _ = family
    plain, ema = _predictions(path)[0], _predictions(path, True)[0]
    assert np.abs(plain["stress"] - ema["stress"]).max() > 1e-5


def test_normalisers_follow_the_file_not_the_config(family):
    """The forces mean is deliberately non-zero in the files while the config's fit spec says
    0.0; DeNS's ``denoising_pos_target`` normaliser is not an inference output."""
    name, path, _ = family
    model = _model(path)
    assert set(model.normalizers) == {"energy", "forces", "stress_isotropic", "stress_anisotropic"}
    assert model.normalizers["forces"]["mean"] != 0.0
    assert model.normalizers["energy"] == {"mean": 0.0, "std": 1.0}
    assert model.config.backbone == ("dens" if name == "dens" else "equiformer_v2")


def test_fairchem_export_round_trip(tmp_path, family):
    _, path, exp = family
    model = _model(path, dtype=torch.float64)
    out = eqv2.export_fairchem(model, tmp_path / "exported.pt")
    original = safe_load(path)
    written = torch.load(out, weights_only=True)
    # every parameter comes back under its fairchem name, with the file's values
    params = {k: v for k, v in original["state_dict"].items() if not is_fairchem_buffer(k)}
    assert set(written["state_dict"]) == set(params)
    for key, value in params.items():
        torch.testing.assert_close(written["state_dict"][key].float(), value, rtol=0, atol=0)
    assert written["config"]["model"]["heads"] == original["config"]["model"]["heads"]
    backbone = original["config"]["model"]["backbone"]
    written_backbone = written["config"]["model"]["backbone"]
    assert {k: written_backbone.get(k) for k in backbone} == backbone
    assert written["config"]["model"]["pass_through_head_outputs"] is True
    assert "decomposition" in written["config"]["outputs"]["stress"]
    for key in ("stress_isotropic", "stress_anisotropic", "forces"):
        assert float(written["normalizers"][key]["mean"]) == pytest.approx(
            float(original["normalizers"][key]["mean"])
        )
    again = eqv2.load_model(out, dtype=torch.float64)
    atoms = structures(exp)[:2]
    for x, y in zip(
        model.predict(atoms, stress=True), again.predict(atoms, stress=True), strict=True
    ):
        assert x["energy"] == y["energy"]
        np.testing.assert_array_equal(x["forces"], y["forces"])
        np.testing.assert_array_equal(x["stress"], y["stress"])


def test_eqv2_checkpoint_round_trip(tmp_path, family):
    _, path, exp = family
    model = _model(path, dtype=torch.float64)
    again = eqv2.load_model(eqv2.save_model(model, tmp_path / "m.pt"), dtype=torch.float64)
    assert again.config.heads == model.config.heads
    assert again.normalizers == model.normalizers
    atoms = structures(exp)[3]
    x, y = model.predict(atoms, stress=True), again.predict(atoms, stress=True)
    assert x["energy"] == y["energy"]
    np.testing.assert_array_equal(x["stress"], y["stress"])


def test_unknown_head_is_refused_naming_it_and_the_supported_ones(checkpoints_dir):
    ckpt = safe_load(checkpoints_dir / "omat_stress_small.pt")
    ckpt["config"]["model"]["heads"]["dipole"] = {"module": "dipole_moment_head"}
    with pytest.raises(
        CheckpointError, match=r"'dipole'.*dipole_moment_head.*rank2_symmetric_head"
    ):
        read_fairchem_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="DeNSRank2Head"):
        eqv2.load_model(ckpt)


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_loading_never_runs_pickled_code(tmp_path, checkpoints_dir, capsys):
    ckpt = safe_load(checkpoints_dir / "dens_stress_small.pt")
    ckpt["val_metrics"] = _Payload()
    path = tmp_path / "tampered.pt"
    with path.open("wb") as handle:
        pickle.dump(ckpt, handle, protocol=2)  # a plain pickle: torch.load reads those too
    with pytest.raises(CheckpointError):
        eqv2.load_model(path)
    assert "pickled code ran" not in capsys.readouterr().out
