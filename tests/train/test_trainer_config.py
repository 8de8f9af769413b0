"""The ``train`` section's budget, early-stopping and final-scoring keys, through a run config."""

from __future__ import annotations

import pytest
import yaml

from eqv2.train.early_stopping import EarlyStopping
from eqv2.train.run_config import parse_run_config
from eqv2.train.trainer_config import FinalScoring, TrainerConfig
from eqv2.train.workflow import scoring_limit

RAW = {
    "train": {
        "max_steps": None, "max_time": "1h30m", "max_time_clock": "process",
        "warmup_time": "2m", "early_stopping": {"metric": "val_efwt", "patience": 3},
        "final_scoring": {"splits": ["val", "test"], "max_structures": 500},
    }
}  # fmt: skip


def test_the_keys_parse_and_round_trip_through_config_yaml():
    run = parse_run_config(RAW, "run.yaml")
    t = run.train
    assert (t.max_steps, t.max_time, t.warmup_time, t.max_time_clock) == (
        None, 5400.0, 120.0, "process",
    )  # fmt: skip
    assert t.early_stopping == EarlyStopping("val_efwt", 3, 0.0)
    assert t.final_scoring == FinalScoring(["val", "test"], 500)
    # what config.yaml and the checkpoint hold reads back the same
    again = parse_run_config(yaml.safe_load(yaml.safe_dump(run.to_dict())), "config.yaml")
    assert again.train == t


def test_final_scoring_limits_each_split():
    run = parse_run_config(RAW)
    assert [scoring_limit(run, s) for s in ("train", "val", "test")] == [0, 500, 500]
    run.train.final_scoring = FinalScoring.of(None)  # the default: every split given
    run.data.train_eval_structures = 10_000
    assert [scoring_limit(run, s) for s in ("train", "val", "test")] == [10_000, None, None]
    run.train.final_scoring = FinalScoring.of({"max_structures": 300})
    assert scoring_limit(run, "train") == 300 and scoring_limit(run, "val") == 300
    run.train.final_scoring = FinalScoring.of(False)
    assert {scoring_limit(run, s) for s in ("train", "val", "test")} == {0}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("final_scoring", {"splits": ["validation"]}, "unknown; choose from"),
     ("final_scoring", {"max_structures": 0}, "at least 1"),
     ("final_scoring", {"split": ["val"]}, "keys splits, max_structures"),
     ("max_time", "soon", "max_time='soon': not a duration"),
     ("warmup_time", -3, "warmup_time=-3: must be a positive")],
)  # fmt: skip
def test_bad_values_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        TrainerConfig(**{key: value})
    with pytest.raises(ValueError, match=r"run.yaml \[train\]"):
        parse_run_config({"train": {key: value}}, "run.yaml")
