"""``relax``/``predict`` split across torchrun ranks, merged in input order; ``--resume``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ase.io import write

import eqv2
from eqv2 import save_model
from eqv2.cli.main import main
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    generated_systems,
    make_potential,
    one_thread,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "in.extxyz"
    write(path, generated_systems(5))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_model(make_potential(), tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.mark.slow  # two processes that import torch and eqv2
def test_torchrun_relax_gives_the_same_file_as_one_process(checkpoint, inputs, tmp_path):
    args = [str(checkpoint), str(inputs), "--steps", "3", "--chunk-size", "2", "--quiet"]
    one = tmp_path / "one.extxyz"
    assert main(["relax", *args, "-o", str(one)]) == 0
    two = tmp_path / "two.extxyz"
    src = str(Path(eqv2.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "eqv2", "relax", *args, "-o", str(two)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("relaxed 5 structures") == 1  # rank 0 reports
    assert two.read_text() == one.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.extxyz", "two.extxyz"]


def test_resume_computes_only_the_missing_chunks(checkpoint, inputs, tmp_path, monkeypatch):
    import eqv2.cli.predict as predict

    fresh = tmp_path / "fresh.extxyz"
    argv = [str(checkpoint), str(inputs), "--chunk-size", "2", "--float64"]
    assert main(["predict", *argv, "-o", str(fresh)]) == 0
    computed: list[list[int]] = []
    real = predict._predict_chunk

    def crash_after_one(potential, structures, indices, args):
        if computed:
            raise KeyboardInterrupt  # the run is killed during its second chunk
        computed.append(list(indices))
        return real(potential, structures, indices, args)

    out = tmp_path / "out.extxyz"
    monkeypatch.setattr(predict, "_predict_chunk", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        main(["predict", *argv, "-o", str(out)])
    assert not out.exists() and (tmp_path / ".out.extxyz.parts" / "chunk-0000000.extxyz").exists()

    def counting(potential, structures, indices, args):
        computed.append(list(indices))
        return real(potential, structures, indices, args)

    monkeypatch.setattr(predict, "_predict_chunk", counting)
    assert main(["predict", *argv, "-o", str(out), "--batch-size", "1", "--resume"]) == 2
    assert main(["predict", *argv, "-o", str(out), "--resume"]) == 0
    assert computed == [[0, 1], [2, 3], [4]]  # chunk 0 was not computed again
    assert out.read_text() == fresh.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.extxyz", "out.extxyz"]
