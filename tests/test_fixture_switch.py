"""EQV2_REQUIRE_FIXTURES: without ../shared, fixture tests skip locally and fail in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TESTS = """
import pytest

def test_uses_the_fixture(small_fixture_dir):
    pass

@pytest.mark.skipif(True, reason="file not found (place ../shared beside the repo)")
def test_own_check():
    pass

@pytest.mark.skip(reason="unrelated")
def test_unrelated_skip():
    pass
"""


@pytest.mark.parametrize("switch", ["", "1"])
def test_missing_shared_skips_locally_and_fails_in_ci(switch, tmp_path):
    repo = tmp_path / "repo"  # no shared/ beside it
    (repo / "tests").mkdir(parents=True)
    shutil.copy(REPO / "tests" / "conftest.py", repo / "tests" / "conftest.py")
    (repo / "tests" / "test_fixtures.py").write_text(TESTS)
    env = {**os.environ, "EQV2_REQUIRE_FIXTURES": switch, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = proc.stdout
    if switch:
        assert proc.returncode == 1, out
        assert "1 skipped, 2 errors" in out  # a fixture skips in setup: reported as an error
        assert "EQV2_REQUIRE_FIXTURES=1 (set by CI) makes this a failure" in out
    else:
        assert proc.returncode == 0, out
        assert "3 skipped" in out and "place ../shared beside the repo" in out
