"""eqv2.allocator: freed memory is reused instead of re-faulted (glibc only)."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eqv2
from eqv2 import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A repeated step that allocates, touches and frees 96 MB tensors (above glibc's largest dynamic
# mmap threshold). After some warm-up steps (glibc's free lists settle: memalign'd chunks and the
# small allocations between them fragment the heap at first), count the minor page faults of 3
# more steps. Untuned, every tensor of every step is a fresh mmap: 3 steps x 3 tensors x 24576
# pages.
_PROBE = """
import json, resource, sys, torch
from eqv2 import allocator
mode = sys.argv[1]
tuned = allocator.tune_allocator() if mode == "tune" else False
if mode == "model":  # what a library user does: import eqv2, build a model, run it
    import eqv2
    from tests.tiny import tiny_model, tiny_graph
    model = tiny_model()
    model(tiny_graph(model))
elif mode == "cli":  # the eqv2 command (a quick failing call: it tunes before the command runs)
    from eqv2.cli import main
    assert main(["predict", "missing.pt", "missing.extxyz", "-o", "out.extxyz"]) == 2
tuned = tuned or allocator.allocator_tuned()
n = 24 * 2**20
def step():
    x = torch.ones(n)
    return float((x * 2.0 + x).sum())
for _ in range(8):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""
PAGES_PER_STEP = 3 * 96 * 2**20 // 4096
REPO = Path(__file__).resolve().parents[1]


def _probe(mode: str, env_value: str | None = None, cwd: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("EQV2_TUNE_MALLOC", None)
    if env_value is not None:
        env["EQV2_TUNE_MALLOC"] = env_value
    # this checkout's sources and tests first (the tests package is imported by "model")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="allocator tuning applies to glibc on Linux only")
def test_tuned_allocator_reuses_freed_memory_without_page_faults():
    untuned = _probe("plain")
    tuned = _probe("tune")
    assert tuned["tuned"] is True
    assert untuned["faults"] > 2 * PAGES_PER_STEP  # fresh mmaps, faulted page by page
    # tuned: served from memory the heap holds (measured 0 in 9 of 10 runs, at most one
    # tensor's pages in the others)
    assert tuned["faults"] < untuned["faults"] // 4


@pytest.mark.skipif(not GLIBC, reason="allocator tuning applies to glibc on Linux only")
def test_opt_out_environment_variable_skips_tuning():
    result = _probe("tune", env_value="0")
    assert result["tuned"] is False
    assert result["faults"] > 2 * PAGES_PER_STEP


def test_public_api_and_idempotence():
    assert eqv2.tune_allocator is allocator.tune_allocator
    assert eqv2.release_memory is allocator.release_memory
    first = eqv2.tune_allocator()
    assert first is (GLIBC and os.environ.get("EQV2_TUNE_MALLOC", "1") != "0")
    assert eqv2.tune_allocator() is first


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_release_memory_hands_back_freed_heap_memory():
    # with the thresholds raised a freed 96 MB block stays in the heap until malloc_trim
    allocator.tune_allocator()
    block = torch.ones(24 * 2**20)
    del block
    assert eqv2.release_memory() is True


@pytest.mark.skipif(not GLIBC, reason="allocator tuning applies to glibc on Linux only")
def test_importing_eqv2_and_building_a_model_leave_malloc_untouched():
    result = _probe("model")
    assert result["tuned"] is False
    assert result["faults"] > 2 * PAGES_PER_STEP  # glibc's defaults: fresh mmaps


@pytest.mark.skipif(not GLIBC, reason="allocator tuning applies to glibc on Linux only")
def test_the_eqv2_command_tunes(tmp_path):
    result = _probe("cli", cwd=tmp_path)
    assert result["tuned"] is True
    assert result["faults"] < PAGES_PER_STEP  # at most one tensor's pages (see above)


def test_entry_points_choose_to_tune(monkeypatch, tmp_path):
    """The CLI and the training entry point call tune_allocator; model construction does not."""
    from eqv2.model import equiformer_v2
    from eqv2.train import workflow
    from eqv2.train.run_config import RunConfig
    from tests.tiny import tiny_model

    cli_main = importlib.import_module("eqv2.cli.main")  # the module (eqv2.cli.main is main)
    calls = []
    monkeypatch.setattr(cli_main, "tune_allocator", lambda: calls.append("cli") or True)
    monkeypatch.setattr(workflow, "tune_allocator", lambda: calls.append("train") or True)
    assert not hasattr(equiformer_v2, "tune_allocator")
    tiny_model()
    assert calls == []
    assert cli_main.main(["predict", str(tmp_path / "missing.pt"), "x.extxyz", "-o", "o"]) == 2
    with pytest.raises(ValueError, match="data.train"):
        workflow.run_training(RunConfig(), tmp_path / "run")
    assert calls == ["cli", "train"]
