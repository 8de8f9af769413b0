"""Config keys of the EquiformerV3 options: width multiplier, per-site grids, validation."""

from __future__ import annotations

import pytest

from eqv2.model import EquiformerV2Config
from tests.tiny import tiny, tiny_config


def test_ffn_width_multiplier_sets_the_hidden_width():
    assert tiny_config(ffn_width_multiplier=2.5).ffn_hidden_channels == 20  # 2.5 × 8
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="ffn_width_multiplier=.*must be positive"):
            tiny_config(ffn_width_multiplier=bad)


def test_grid_resolutions_per_site():
    c = tiny_config(attn_grid_resolution=[6, 4], ffn_grid_resolution=10)
    assert (c.edge_grid_resolution, c.node_grid_resolution) == ((6, 4), 10)
    assert tiny_config().edge_grid_resolution == tiny_config().node_grid_resolution == 8
    round_trip = EquiformerV2Config.from_dict(c.to_dict())
    assert round_trip.edge_grid_resolution == (6, 4)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("attn_grid_resolution", [7, 8], "latitude count must be even and at least 6"),
        ("attn_grid_resolution", [6, 2], "longitude count at least 3"),  # mmax 1
        ("ffn_grid_resolution", [6, 4], "longitude count at least 5"),  # lmax 2 on nodes
        ("ffn_grid_resolution", [6, 6, 6], r"one size or a \[lat, long\] pair"),
    ],
)
def test_bad_grids_are_refused(key, value, message):
    with pytest.raises(ValueError, match=message):
        EquiformerV2Config.from_dict(tiny(lmax_list=[2], mmax_list=[1], **{key: value}))
