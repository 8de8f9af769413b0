"""eqv2's version has one source, src/eqv2/version.py, read by the package, checkpoints and the
build."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import eqv2
import eqv2.version
from eqv2.model.checkpoint import load_checkpoint, save_checkpoint

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_one_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", eqv2.version.__version__)
    assert eqv2.__version__ == eqv2.version.__version__


def test_pyproject_reads_the_version_file() -> None:
    text = PYPROJECT.read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic = \["version"\]', project, re.M)
    assert not re.search(r"^version\s*=", project, re.M), "a second, static version"
    assert 'version = { attr = "eqv2.version.__version__" }' in text


def test_checkpoints_record_the_version(tmp_path) -> None:
    from tests.tiny import tiny

    path = save_checkpoint(tmp_path / "m.pt", state_dict={"w": torch.zeros(1)}, config=tiny())
    assert load_checkpoint(path)["eqv2_version"] == eqv2.__version__
