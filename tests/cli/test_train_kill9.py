"""``kill -9`` of ``eqv2 train`` with DataLoader workers, then ``--resume`` at once: the resumed
run starts (the orphaned workers do not keep the run directory's lock) and ends bit-identical to
an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ase.io import write

import eqv2
from eqv2.data.generate import generate_dataset
from tests.cli.test_train_cli import TINY_YAML

STEPS = 40
CONFIG = (
    TINY_YAML.replace("max_steps: 6", f"max_steps: {STEPS}")
    .replace("eval_every: 3", f"eval_every: {STEPS}")
    .replace("max_atoms_per_batch: 80", "max_atoms_per_batch: 40")
)


def _command(config: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "eqv2", "train", str(config), "--train", str(data),
            "--out", str(out), "--no-progress", "--set", "data.num_workers=2",
            "--set", "data.train_eval_structures=0", *extra]  # fmt: skip


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    def walk(obj, prefix=""):  # noqa: ANN001, ANN202
        if isinstance(obj, torch.Tensor):
            yield prefix, obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, f"{prefix}/{k}")

    return dict(walk(torch.load(path, weights_only=True)))


@pytest.mark.slow  # three training processes of a tiny model
def test_kill_9_then_resume_at_once_ends_like_an_uninterrupted_run(tmp_path):
    assert "alpha_drop" not in CONFIG  # the default dropout is on: random streams are restored
    config, data = tmp_path / "tiny.yaml", tmp_path / "train.extxyz"
    config.write_text(CONFIG)
    ds = generate_dataset(2, seed=3, relax_steps=2, rattle_frames=1, sizes=((2, 2),), layers=(3,))
    write(data, ds.s2ef_frames)
    src = str(Path(eqv2.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}

    def run(out: Path, *extra: str) -> None:
        done = subprocess.run(_command(config, data, out, *extra), env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    run(tmp_path / "straight")
    killed = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(_command(config, data, killed), env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 240
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    assert not (killed / "final.pt").exists(), "the run ended before it was killed"
    run(killed, "--resume")  # at once: refused while orphaned workers held the lock
    want, got = _tensors(tmp_path / "straight" / "final.pt"), _tensors(killed / "final.pt")
    assert want.keys() == got.keys() and len(want) > 10
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
