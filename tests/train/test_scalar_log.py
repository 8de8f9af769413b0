"""The step log: CSV rows and TensorBoard scalars, cut back when a run resumes."""

from __future__ import annotations

import math

import pytest

from eqv2.train.scalar_log import ScalarLog, tensorboard_tag
from tests.train.tb_events import read_scalars


def _row(step: int, **extra) -> dict:
    return {"step": step, "epoch": 0, "lr": 1e-3, "loss": 10.0 / step, "grad_norm": math.nan,
            **extra}  # fmt: skip


def test_tags():
    assert tensorboard_tag("loss") == "train/loss"
    assert tensorboard_tag("val_force_mae") == "val/force_mae"


def test_rows_reach_csv_and_tensorboard(tmp_path):
    with ScalarLog(tmp_path) as log:
        for step in (1, 2, 3):
            log.write(_row(step, **({"val_force_mae": 0.5} if step == 2 else {})))
    scalars = read_scalars(tmp_path)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert scalars["train/loss"][2][1] == pytest.approx(10.0 / 3)
    assert scalars["val/force_mae"] == [(2, 0.5)]
    assert "train/grad_norm" not in scalars  # NaN (no clipping) is left out
    assert "train/step" not in scalars
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("step,epoch,lr,loss") and len(lines) == 4


def test_reopening_at_a_step_drops_what_came_after(tmp_path):
    with ScalarLog(tmp_path) as log:
        for step in range(1, 6):
            log.write(_row(step))
    with ScalarLog(tmp_path, start_step=3) as log:  # resumed from the step-3 checkpoint
        for step in range(4, 7):
            log.write(_row(step, loss=100.0 + step))
    scalars = read_scalars(tmp_path)["train/loss"]
    assert [s for s, _ in scalars] == [1, 2, 3, 4, 5, 6]
    assert [v for s, v in scalars if s > 3] == [104.0, 105.0, 106.0]
    steps = [r.split(",")[0] for r in (tmp_path / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4", "5", "6"]


def test_tensorboard_can_be_switched_off(tmp_path):
    with ScalarLog(tmp_path, tensorboard=False) as log:
        log.write(_row(1))
    assert not list(tmp_path.glob("events.*")) and (tmp_path / "log.csv").exists()
