"""The progress view: log lines off a terminal, a bar on one, an ETA from the budget."""

from __future__ import annotations

import io

from eqv2.train.budget import Budget
from eqv2.train.progress import TrainingProgress


def _row(step, time=0.0, **extra):
    return {"step": step, "loss": 0.5 / step, "lr": 1e-3, "time": time, **extra}


def test_log_lines_off_a_terminal_every_interval_at_validations_and_at_the_end():
    stream = io.StringIO()
    view = TrainingProgress(Budget(10), stream=stream, interval=1e9)
    for step in range(1, 11):
        view.update(_row(step, **({"val_force_mae": 0.25} if step == 5 else {})))
    view.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["1/10", "5/10", "10/10"]
    assert lines[0].startswith("step 1/10 (10%) loss 0.5 lr 0.001 eta ")
    assert "val_force_mae 0.25" in lines[1] and lines[2].endswith("eta 0:00:00")


def test_a_time_budget_shows_the_time_used_and_a_resumed_run_counts_from_its_start():
    stream = io.StringIO()
    view = TrainingProgress(Budget(None, max_time=60.0), start_step=4, start_time=30.0,
                            stream=stream, interval=0.0)  # fmt: skip
    assert view.eta(0.5) == float("inf")  # nothing trained by this process yet
    view.update(_row(5, time=45.0))
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("step 5 (75%) loss 0.1 lr 0.001 time 0:00:45/0:01:00 eta ")


def test_a_terminal_gets_a_bar():
    stream = io.StringIO()
    view = TrainingProgress(Budget(4), stream=stream, tty=True)
    for step in range(1, 5):
        view.update(_row(step))
    view.close()
    text = stream.getvalue()
    assert "train 100%|" in text and "step 4/4 (100%)" in text
