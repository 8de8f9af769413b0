"""Budgets: durations, the schedule over steps and time, the clock, and runs that stop on time."""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from eqv2.train.budget import Budget, TrainingClock, format_duration, parse_duration
from eqv2.train.distributed import distributed_session
from eqv2.train.loader import LoaderConfig
from eqv2.train.optim import cosine_warmup_factor
from eqv2.train.trainer import Trainer, TrainerConfig
from eqv2.train.training_state import TrainingState
from tests.train.test_distributed import _free_port
from tests.train.test_trainer import _potential, frames  # noqa: F401  (fixture)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), (90, 90), (1.5, 1.5), ("90s", 90), ("30m", 1800), ("30 min", 1800),
     ("1.5h", 5400), ("1h30m", 5400), ("2d", 172800), (".5h", 1800)],
)  # fmt: skip
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["abc", "-5", "0", 0, -1.0, "5 parsecs", "h", True, "inf"])
def test_bad_durations_are_refused_with_the_key_named(bad):
    with pytest.raises(ValueError, match="max_time="):
        parse_duration(bad)


@given(st.integers(0, 10**6))
def test_format_duration_round_trips(seconds):
    h, m, s = (int(x) for x in format_duration(seconds).split(":"))
    assert 3600 * h + 60 * m + s == seconds


@given(st.integers(0, 400), st.integers(1, 300), st.integers(0, 50))
def test_a_step_budget_gives_the_step_schedule(step, total, warmup):
    budget = Budget(total, warmup)
    assert budget.lr_factor(step, 123.0, 0.2, 0.01) == cosine_warmup_factor(
        step, total, warmup, 0.2, 0.01
    )


def test_a_time_budget_warms_up_then_decays_to_the_minimum_at_its_end():
    budget = Budget(None, 0, max_time=100.0, warmup_time=10.0)
    factors = [budget.lr_factor(0, t, 0.2, 0.01) for t in range(0, 101)]
    assert factors[0] == pytest.approx(0.2) and factors[5] == pytest.approx(0.6)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.505)
    assert factors[100] == pytest.approx(0.01) and budget.lr_factor(0, 150, 0.2, 0.01) == 0.01
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert not budget.exhausted(10**9, 99.9) and budget.exhausted(0, 100.0)


def test_with_steps_and_time_the_first_to_end_ends_the_run_and_the_schedule():
    budget = Budget(100, 10, max_time=50.0)
    assert budget.timed and budget.exhausted(100, 1.0) and budget.exhausted(3, 50.0)
    # half the steps, a tenth of the time: the cosine is half-way
    assert budget.lr_factor(55, 5.0, 0.2, 0.0) == pytest.approx(0.5)
    # a tenth of the steps (warm-up over), 3/4 of the time: time leads
    assert budget.lr_factor(19, 37.5, 0.2, 0.0) == pytest.approx(
        0.5 * (1 + math.cos(0.75 * math.pi))
    )
    assert budget.progress(19, 37.5) == 0.75 and budget.progress(100, 0) == 1.0
    assert not Budget(100).timed


def test_a_run_without_any_budget_is_refused():
    with pytest.raises(ValueError, match="never end"):
        TrainerConfig(max_steps=None)
    with pytest.raises(ValueError, match="no budget"):
        Budget(None)
    with pytest.raises(ValueError, match="warmup_time=60.0 s is not shorter than max_time"):
        TrainerConfig(max_time="1m", warmup_time=60)
    with pytest.raises(ValueError, match="max_time_clock='cpu'"):
        TrainerConfig(max_time=10, max_time_clock="cpu")
    assert TrainerConfig(max_steps=None, max_time="1.5h").max_time == 5400.0


def test_the_clock_counts_only_while_started_and_continues_after_restore():
    now = [100.0]
    clock = TrainingClock(lambda: now[0])
    assert clock.tick(sync=True) == 0.0  # starts itself
    now[0] = 103.0
    assert clock.tick(sync=False) == 3.0 and clock.last == 3.0
    now[0] = 104.0
    clock.stop()
    now[0] = 200.0  # between runs: not counted
    clock.start()
    now[0] = 201.0
    assert clock.elapsed() == 5.0 and clock.last == 3.0
    clock.restore(40.0, 50.0)  # a checkpoint written 10 s after its last step's reading
    assert clock.elapsed() == 50.0 and clock.last == 40.0
    clock.start()
    now[0] = 202.5
    assert clock.tick(sync=True) == 51.5


class StepClock:
    """A deterministic clock: 10 s per trained step (so a kill and resume replay exactly)."""

    trainer: Trainer | None = None

    def __call__(self) -> float:
        return 10.0 * (self.trainer.step if self.trainer else 0)


def _timed_trainer(frames, out, *, on_step=None, **config):  # noqa: F811
    clock = StepClock()
    settings = dict(max_steps=None, max_time=45.0, lr=2e-3, warmup_steps=2,
                    max_atoms_per_batch=60, eval_every=100, checkpoint_every=2, ema_decay=0.9,
                    device="cpu", tensorboard=False, lr_min_factor=0.05)  # fmt: skip
    settings.update(config)
    trainer = Trainer(_potential(frames, alpha_drop=0.2, drop_path_rate=0.2), frames, out,
                      TrainerConfig(**settings), val=frames[:2], on_step=on_step,
                      loader=LoaderConfig(num_workers=0), clock=clock)  # fmt: skip
    clock.trainer = trainer
    return trainer


def test_a_time_budget_stops_the_run_with_the_schedule_done_and_resumes_exactly(frames, tmp_path):  # noqa: F811
    """Step k (0-based) reads 10·k s: the step that reaches 45 s is the 6th (50 s); the run
    stops there with the LR at its minimum; killed at step 4 and resumed from step 2's
    checkpoint, it ends bit-identical and keeps the elapsed time."""
    straight = _timed_trainer(frames, tmp_path / "a")
    straight.fit()
    assert straight.step == 6 and straight.clock.last == 50.0
    assert straight.scheduler.get_last_lr()[0] == pytest.approx(2e-3 * 0.05)
    state, _ = TrainingState.read(tmp_path / "a" / "checkpoint.pt")
    # the final checkpoint: the last reading, and the time when written (one more step)
    assert (state.step, state.clock_reading, state.elapsed_time) == (6, 50.0, 60.0)
    assert (tmp_path / "a" / "best.pt").exists()

    class Killed(Exception):
        pass

    def kill_at_4(row):
        if row["step"] == 4:
            raise Killed

    first = _timed_trainer(frames, tmp_path / "b", on_step=kill_at_4)
    with pytest.raises(Killed):
        first.fit()
    resumed = _timed_trainer(frames, tmp_path / "b")
    resumed.resume()
    assert (resumed.step, resumed.clock.last, resumed.clock.elapsed()) == (2, 10.0, 20.0)
    resumed.fit()
    assert resumed.step == 6
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0].endswith(",time") and log[-1].endswith(",50.0")


def test_epochs_and_time_compose(frames, tmp_path):  # noqa: F811
    """An epoch budget shorter than the time budget ends the run, and the reverse."""
    by_epoch = _timed_trainer(frames, tmp_path / "e", max_epochs=1, max_time=1e6)
    per_epoch = by_epoch.max_steps
    assert 2 < per_epoch < 9
    by_epoch.fit()
    assert by_epoch.step == per_epoch
    by_time = _timed_trainer(frames, tmp_path / "t", max_epochs=3, max_time=15.0)
    by_time.fit()
    assert by_time.step == 3 and by_time.scheduler.get_last_lr()[0] == pytest.approx(1e-4)


def test_a_wall_clock_budget_stops_within_one_step(frames, tmp_path):  # noqa: F811
    durations = []
    trainer = Trainer(_potential(frames), frames, tmp_path,
                      TrainerConfig(max_steps=10_000, max_time=1.0, warmup_steps=1,
                                    max_atoms_per_batch=30, eval_every=10_000, device="cpu",
                                    tensorboard=False, ema_decay=None),
                      on_step=lambda row: durations.append(row["time"]),
                      loader=LoaderConfig(num_workers=0))  # fmt: skip
    trainer.fit()
    # every step but the last started with time left (a loaded machine may manage only one)
    assert trainer.step == len(durations) and all(t < 1.0 for t in durations[:-1])
    assert durations[-1] >= 1.0
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(2e-4 * 0.01)


def _clock_worker(rank: int, world: int, port: int, out) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    with distributed_session(torch.device("cpu")):
        # rank 1's clock runs three times as fast: rank 0's decides for both
        ticks = iter(range(100))
        clock = TrainingClock(lambda: (1 + 2 * rank) * next(ticks))
        budget = Budget(None, max_time=5.0)
        readings = []
        while not budget.exhausted(0, clock.last):
            readings.append(clock.tick(sync=True))
    torch.save(readings, out / f"clock{rank}.pt")


def test_processes_stop_on_rank_0s_clock(tmp_path):
    torch.multiprocessing.start_processes(
        _clock_worker, args=(2, _free_port(), tmp_path), nprocs=2, start_method="fork"
    )
    readings = [torch.load(tmp_path / f"clock{r}.pt") for r in range(2)]
    assert readings[0] == readings[1] == [1.0, 2.0, 3.0, 4.0, 5.0]
