"""Writing an AdsorbML run to a directory: structures (extxyz) and a JSON report, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase import Atoms

from eqv2.safe_io import write_json
from eqv2.simulate.adsorbml.screening import AdsorbMLResult, Candidate
from eqv2.simulate.relax.trajectory import write_trajectory as _write_extxyz  # atomic extxyz

__all__ = ["write_outputs"]


def _annotated(atoms: Atoms, fields: dict[str, Any]) -> Atoms:
    """A copy whose ``info`` gains ``fields`` (None dropped, lists of names joined)."""
    out = atoms.copy()
    out.calc = atoms.calc  # keep the SinglePointCalculator so extxyz writes energy and forces
    for key, value in fields.items():
        if value is None:
            continue
        out.info[key] = ",".join(value) if isinstance(value, list) else value
    return out


def _ml_fields(c: Candidate) -> dict[str, Any]:
    return {
        "placement_id": c.placement_id,
        "ml_energy": c.ml_energy,
        "ml_valid": c.valid,
        "ml_invalid_reasons": None if c.validity is None else c.validity.reasons or None,
        "ml_error": c.error,
        "rank": c.rank,
        "sp_energy": c.sp_energy,
    }


def write_outputs(result: AdsorbMLResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``result`` under ``out_dir``; return ``{name: path}``.

    Files (each written to a temporary name, then renamed):

    - ``placements.extxyz``: the initial configurations (``info``: placement, site, ...);
    - ``ml_relaxed.extxyz``: the ML relaxations with ML energy and forces, ``ml_valid``,
      ``ml_invalid_reasons``, ``rank`` (valid ones), ``sp_energy`` (top k);
    - ``reference_relaxed.extxyz``: the baseline's reference relaxations (when computed);
    - ``reference_rx.extxyz``: ML+RX reference relaxations (when run);
    - ``report.json``: :meth:`AdsorbMLResult.to_dict`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {
        "placements": _write_extxyz(
            out / "placements.extxyz", [c.initial for c in result.candidates]
        ),
        "ml_relaxed": _write_extxyz(
            out / "ml_relaxed.extxyz",
            [_annotated(c.relaxed, _ml_fields(c)) for c in result.candidates],
        ),
    }
    baseline = result.baseline
    if baseline is not None and baseline.relaxed:
        images = []
        for c, atoms in zip(result.candidates, baseline.relaxed, strict=True):
            reasons = None if c.reference_validity is None else c.reference_validity.reasons
            fields = {
                "placement_id": c.placement_id,
                "reference_energy": c.reference_energy,
                "reference_calls": c.reference_calls,
                "reference_invalid_reasons": reasons or None,
                "reference_error": c.reference_error,
            }
            images.append(_annotated(atoms, fields))
        written["reference_relaxed"] = _write_extxyz(out / "reference_relaxed.extxyz", images)
    rx = [c for c in result.candidates if c.rx_relaxed is not None]
    if rx:
        images = []
        for c in rx:
            fields = {
                "placement_id": c.placement_id,
                "rank": c.rank,
                "rx_energy": c.rx_energy,
                "rx_calls": c.rx_calls,
                "rx_invalid_reasons": None
                if c.rx_validity is None
                else c.rx_validity.reasons or None,
                "rx_error": c.rx_error,
            }
            images.append(_annotated(c.rx_relaxed, fields))
        written["reference_rx"] = _write_extxyz(out / "reference_rx.extxyz", images)
    written["report"] = write_json(result.to_dict(), out / "report.json")
    return written
