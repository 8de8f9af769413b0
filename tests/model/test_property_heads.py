"""Property heads: sum vs mean readout, per-target normalisers, units, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from eqv2.model import EquiformerV2, Potential
from eqv2.model.heads import resolve_property_heads
from eqv2.model.loading import load_model, save_model
from tests.tiny import tiny_config

HEADS = {
    "count": {"module": "scalar_head", "reduce": "sum", "unit": "atoms"},
    "gap": {"module": "scalar_head", "reduce": "mean", "unit": "meV"},
}


def _potential(heads=HEADS, normalizers=None) -> Potential:
    torch.manual_seed(0)
    model = EquiformerV2(tiny_config(heads=heads, max_radius=4.0, max_neighbors=12))
    return Potential(model.double(), normalizers).eval()


def test_extensive_targets_double_with_the_cell_intensive_ones_do_not():
    pot = _potential()
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    one, two = pot.predict([cell, cell.repeat((2, 1, 1))])
    assert set(one) == {"count", "gap"}  # a property-only model: no energy, no forces
    assert two["count"] == pytest.approx(2 * one["count"], rel=1e-9)
    assert two["gap"] == pytest.approx(one["gap"], rel=1e-9)
    assert abs(one["count"]) > 1e-6


def test_each_target_is_denormalised_with_its_own_normaliser():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    raw = _potential().predict(atoms)
    norm = {"count": {"mean": 5.0, "std": 2.0}, "gap": {"mean": -1.0, "std": 10.0}}
    pot = _potential(normalizers=norm)
    scaled = pot.predict(atoms)
    assert scaled["count"] == pytest.approx(raw["count"] * 2.0 + 5.0, rel=1e-12)
    assert scaled["gap"] == pytest.approx(raw["gap"] * 10.0 - 1.0, rel=1e-12)
    value = torch.tensor([3.0], dtype=torch.float64)
    assert pot.normalize("gap", value).item() == pytest.approx((3.0 + 1.0) / 10.0)
    assert pot.units == {"count": "atoms", "gap": "meV"}
    assert not pot.conservative and not pot.has_energy


def test_checkpoint_round_trip_keeps_heads_normalisers_and_units(tmp_path):
    norm = {"count": {"mean": 5.0, "std": 2.0}, "gap": {"mean": -1.0, "std": 10.0}}
    pot = _potential(normalizers=norm)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    path = save_model(pot, tmp_path / "props.pt")
    again = load_model(path, dtype=torch.float64)
    assert again.normalizers["gap"] == {"mean": -1.0, "std": 10.0}
    assert again.units == pot.units
    assert again.predict(atoms) == pytest.approx(pot.predict(atoms), rel=1e-12)


def test_mixed_model_predicts_energy_forces_and_the_target():
    heads = {"energy": {"module": "equiformer_v2_energy_head"},
             "forces": {"module": "equiformer_v2_force_head"}, "gap": HEADS["gap"]}  # fmt: skip
    result = _potential(heads).predict(bulk("Cu", "fcc", a=3.6, cubic=True))
    assert set(result) == {"energy", "forces", "gap"}


@pytest.mark.parametrize(
    ("heads", "match"),
    [
        ({"energy": {"module": "scalar_head"}}, "named like a fixed output"),
        ({"gap": {"module": "scalar_head", "reduce": "max"}}, "reduce='max'"),
        ({"gap": {"module": "scalar_head", "readout": "mean"}}, "unknown option"),
        (
            {"forces": {"module": "equiformer_v2_force_head"}, "gap": {"module": "scalar_head"}},
            "come with an energy head",
        ),
    ],
)
def test_bad_property_heads_are_refused(heads, match):
    with pytest.raises(ValueError, match=match):
        resolve_property_heads(tiny_config(heads=heads))
