"""Shared test fixtures: paths to ../shared and skips when it is absent.

Locally a test whose fixtures in ../shared are missing is skipped with the reason. CI sets
``EQV2_REQUIRE_FIXTURES=1`` (``.ci/run``): then every such skip (from these fixtures or from any
test's own check that names ../shared) is reported as a failure, so a CI run without the
fixtures cannot go green.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference"
SMALL_FIXTURE = REFERENCE / "eqv2_small"
CHECKPOINTS = REFERENCE / "checkpoints"

torch.set_num_threads(2)

#: Set (to anything but "" or "0") by CI: missing ../shared fixtures fail instead of skipping.
REQUIRE_FIXTURES = os.environ.get("EQV2_REQUIRE_FIXTURES", "") not in ("", "0")
_SWITCH = "EQV2_REQUIRE_FIXTURES=1 (set by CI) makes this a failure"


def _require(path: Path) -> Path:
    if not path.exists():
        reason = f"reference fixtures not found at {path} (place ../shared beside the repo)"
        if REQUIRE_FIXTURES:
            pytest.fail(f"{reason}; {_SWITCH}", pytrace=False)
        pytest.skip(reason)
    return path


def _needs_shared(reason: str) -> bool:
    return "../shared" in reason or str(SHARED) in reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With EQV2_REQUIRE_FIXTURES set, a skip because ../shared is missing becomes a failure."""
    outcome = yield
    report = outcome.get_result()
    if not (REQUIRE_FIXTURES and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if _needs_shared(reason):
        report.outcome = "failed"
        report.longrepr = f"{reason}; {_SWITCH}"


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


@pytest.fixture
def tiny_float64_model():
    """The suite's shared tiny EquiformerV2 (`tests/tiny.py`) in float64, eval mode, seed 0."""
    from tests.tiny import tiny_model

    return tiny_model(torch.float64).eval()
