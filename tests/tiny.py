"""The tiny EquiformerV2 sizes shared by fast tests (each test adds what it needs)."""

from __future__ import annotations

from typing import Any

#: One block, 8 channels, 2 heads: builds and runs in milliseconds.
TINY_WIDTHS: dict[str, Any] = dict(
    num_layers=1,
    sphere_channels=8,
    attn_hidden_channels=8,
    num_heads=2,
    attn_alpha_channels=4,
    attn_value_channels=4,
    edge_channels=8,
)


def tiny(**overrides: Any) -> dict[str, Any]:
    """``TINY_WIDTHS`` plus the test's own keys (which may also replace a width)."""
    return {**TINY_WIDTHS, **overrides}
