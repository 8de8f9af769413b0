"""Shared test fixtures: paths to ../shared and skips when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
SMALL_FIXTURE = REFERENCE / "eqv2_small"
CHECKPOINTS = REFERENCE / "checkpoints"

torch.set_num_threads(2)


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference fixtures not found at {path} (place ../shared beside the repo)")
    return path


@pytest.fixture(scope="session")
def small_fixture_dir() -> Path:
    """`../shared/reference/eqv2_small`, or skip with a clear message."""
    return _require(SMALL_FIXTURE)


@pytest.fixture(scope="session")
def checkpoints_dir() -> Path:
    """`../shared/reference/checkpoints`, or skip with a clear message."""
    return _require(CHECKPOINTS)


@pytest.fixture(scope="session")
def reference_npz(small_fixture_dir: Path):
    import numpy as np

    return dict(np.load(small_fixture_dir / "reference.npz"))


@pytest.fixture(scope="session")
def reference_state_dict(small_fixture_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(small_fixture_dir / "state_dict.pt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def seed_spread(small_fixture_dir: Path) -> dict:
    import json

    return json.loads((small_fixture_dir / "seed_spread.json").read_text())
