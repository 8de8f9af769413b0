"""Early stopping: the best-value bookkeeping, its config, and a run it ends."""

from __future__ import annotations

import math

import pytest

from eqv2.model.checkpoint import load_checkpoint
from eqv2.train.early_stopping import BestTracker, EarlyStopping
from eqv2.train.loader import LoaderConfig
from eqv2.train.trainer import Trainer, TrainerConfig
from tests.train.test_trainer import _potential, frames  # noqa: F401  (fixture)


def _feed(tracker: BestTracker, values) -> list[tuple[bool, bool]]:
    """(new best, should stop) after each value."""
    out = []
    for value in values:
        row = {} if value is None else {tracker.metric: value}
        out.append((tracker.update(row), tracker.should_stop))
    return out


def test_patience_counts_evaluations_without_an_improvement_beyond_min_delta():
    tracker = BestTracker(EarlyStopping("val_force_mae", patience=2, min_delta=0.01))
    # 0.075 improves by less than min_delta; None (metric missing) and NaN never improve
    assert _feed(tracker, [0.1, 0.08, 0.075, 0.065, 0.05, None, math.nan]) == [
        (True, False), (True, False), (False, False), (True, False), (True, False),
        (False, False), (False, True),
    ]  # fmt: skip
    assert tracker.best == pytest.approx(0.05)


def test_higher_is_better_for_cosines_and_a_tracker_without_patience_never_stops():
    tracker = BestTracker(EarlyStopping("val_force_cos", patience=1))
    assert _feed(tracker, [0.2, 0.5, 0.4]) == [(True, False), (True, False), (False, True)]
    keeper = BestTracker(None)  # best.pt only, on the force MAE
    assert keeper.metric == "val_force_mae"
    assert [stop for _, stop in _feed(keeper, [1.0] + [2.0] * 20)] == [False] * 21


def test_state_round_trips_and_another_metric_starts_afresh():
    tracker = BestTracker(EarlyStopping(patience=3))
    _feed(tracker, [0.3, 0.4])
    again = BestTracker(EarlyStopping(patience=3))
    again.load_state_dict(tracker.state_dict())
    assert (again.best, again.since_best) == (0.3, 1)
    other = BestTracker(EarlyStopping("val_energy_mae", patience=3))
    other.load_state_dict(tracker.state_dict())
    assert (other.best, other.since_best) == (math.inf, 0)


@pytest.mark.parametrize(
    ("value", "message"),
    [({"metric": "force_mae"}, "choose one of"), ({"patience": 0}, "at least 1"),
     ({"min_delta": -1}, "must be >= 0"), ({"patients": 3}, "unknown key"),
     ("yes", "expected a mapping")],
)  # fmt: skip
def test_bad_settings_name_the_key(value, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(early_stopping=value)


def test_early_stopping_ends_the_run_keeps_the_best_and_stays_stopped(frames, tmp_path):  # noqa: F811
    """With a huge min_delta only the first validation is a best: patience 2 ends the run at
    the third validation, best.pt is step 1's, and a resumed run does not train on."""
    config = TrainerConfig(max_steps=50, eval_every=1, checkpoint_every=100, max_atoms_per_batch=40,
                           device="cpu", tensorboard=False, ema_decay=None,
                           early_stopping={"patience": 2, "min_delta": 1e9})  # fmt: skip
    loader = LoaderConfig(num_workers=0)
    trainer = Trainer(_potential(frames), frames, tmp_path, config, val=frames[:2], loader=loader)
    trainer.fit()
    assert trainer.step == 3 and trainer.stopped_early
    assert load_checkpoint(tmp_path / "best.pt")["extra"]["step"] == 1
    again = Trainer(_potential(frames), frames, tmp_path, config, val=frames[:2], loader=loader)
    again.resume()
    assert again.stopped_early and again.fit() == {} and again.step == 3
    with pytest.raises(ValueError, match="needs a validation set"):
        Trainer(_potential(frames), frames, tmp_path / "x", config)


def test_a_rule_on_a_metric_the_run_does_not_log_is_refused() -> None:
    rule = EarlyStopping(metric="val_gapp_mae", patience=2)
    with pytest.raises(ValueError, match="not a validation metric of this run"):
        BestTracker(rule, available=("val_gap_mae",))
    assert BestTracker(EarlyStopping(metric="val_gap_mae"), available=("val_gap_mae",))
