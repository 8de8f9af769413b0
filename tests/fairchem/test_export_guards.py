"""fairchem export refuses eqv2-only architecture options (a file fairchem would misread)."""

from __future__ import annotations

import pytest

from eqv2.fairchem.write import eqv2_only_options, to_fairchem_checkpoint
from eqv2.model import EquiformerV2, EquiformerV2Config
from tests.tiny import TINY_MODEL


@pytest.mark.parametrize(
    "extra",
    [
        {"envelope": {"type": "polynomial", "p": 5}, "max_neighbors": None},
        {"ffn_width_multiplier": 2.0},
        {"norm_type": "merge_rms_norm"},
        {"norm_type": "merge_layer_norm"},
    ],
)
def test_export_refuses_eqv2_only_options(extra: dict) -> None:
    cfg = EquiformerV2Config.from_dict({**TINY_MODEL, **extra})
    assert eqv2_only_options(cfg)
    model = EquiformerV2(cfg)
    with pytest.raises(ValueError, match="eqv2-only architecture options"):
        to_fairchem_checkpoint(state_dict=model.state_dict(), config=cfg)


def test_plain_config_has_no_eqv2_only_options() -> None:
    assert eqv2_only_options(EquiformerV2Config.from_dict(dict(TINY_MODEL))) == []
