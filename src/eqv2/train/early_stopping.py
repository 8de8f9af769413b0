"""The best validation result of a run (``best.pt``) and early stopping on it.

`BestTracker` follows one validation metric (``val_force_mae`` unless ``train.early_stopping``
names another): each validation either improves on the best value by more than
``min_delta`` — the trainer then writes ``best.pt`` — or counts one evaluation without
improvement; with ``patience`` N, the run stops after N evaluations in a row without one.
Validation metrics are summed over all processes, so every process takes the same decision.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

__all__ = ["EarlyStopping", "BestTracker", "HIGHER_IS_BETTER", "VALIDATION_METRICS"]

#: Metrics ``early_stopping.metric`` may name (``log.csv`` columns of validation steps).
VALIDATION_METRICS = (
    "val_force_mae", "val_energy_mae", "val_force_cos", "val_efwt", "val_stress_mae",
    "val_stress_isotropic_mae", "val_stress_anisotropic_mae",
)  # fmt: skip
#: Of those, the ones where larger is better.
HIGHER_IS_BETTER = ("val_force_cos", "val_efwt")


@dataclass
class EarlyStopping:
    """``train.early_stopping``: stop after ``patience`` validations in a row that do not
    improve ``metric`` by more than ``min_delta`` (its own units: eV/Å for force MAE).
    ``patience: null`` keeps only the best checkpoint of ``metric`` and never stops."""

    metric: str = "val_force_mae"
    patience: int | None = 5
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        named = self.metric.startswith("val_") and self.metric.endswith("_mae")
        if self.metric not in VALIDATION_METRICS and not named:
            raise ValueError(
                f"early_stopping.metric={self.metric!r}: choose one of {VALIDATION_METRICS}, "
                "or val_<target>_mae for a named target (e.g. val_gap_mae)."
            )
        if self.patience is not None and int(self.patience) < 1:
            raise ValueError(
                f"early_stopping.patience={self.patience}: must be at least 1 evaluation "
                "(or null: never stop)."
            )
        if not self.min_delta >= 0:
            raise ValueError(f"early_stopping.min_delta={self.min_delta}: must be >= 0.")

    @classmethod
    def of(cls, value: EarlyStopping | dict[str, Any] | None) -> EarlyStopping | None:
        """From a config value: a mapping of the keys above, an instance, or None (off)."""
        if value is None or isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ValueError(
                f"early_stopping={value!r}: expected a mapping such as "
                "{metric: val_force_mae, patience: 5, min_delta: 0.0}, or null."
            )
        unknown = sorted(set(value) - {"metric", "patience", "min_delta"})
        if unknown:
            raise ValueError(
                f"early_stopping: unknown key(s) {unknown}; valid: metric, patience, min_delta."
            )
        return cls(**value)


class BestTracker:
    """The best value so far of one validation metric, and evaluations since it improved."""

    def __init__(
        self,
        rule: EarlyStopping | None,
        validated: bool = True,
        default_metric: str = "val_force_mae",
        available: Collection[str] | None = None,
    ) -> None:
        """``validated``: whether the run has a validation set (early stopping needs one);
        ``default_metric``: the metric that picks ``best.pt`` without a rule; ``available``:
        the validation metrics the run logs (a rule naming another one is refused, since it
        would never improve and stop the run after ``patience`` evaluations)."""
        if rule is not None and not validated:
            raise ValueError("train.early_stopping needs a validation set: pass --val (data.val).")
        if rule is not None and available is not None and rule.metric not in available:
            raise ValueError(
                f"early_stopping.metric={rule.metric!r} is not a validation metric of this run; "
                f"choose one of {sorted(available)}."
            )
        self.rule = rule or EarlyStopping(metric=default_metric, patience=None)
        self.sign = -1.0 if self.rule.metric in HIGHER_IS_BETTER else 1.0
        self.best = math.inf  # of sign × value: smaller is better
        self.since_best = 0

    @property
    def metric(self) -> str:
        return self.rule.metric

    def update(self, row: dict[str, Any]) -> bool:
        """Record a validation ``row`` (``val_*`` keys); True when it is a new best.

        A row without the metric (e.g. stress metrics of a set without stress labels) or with
        a non-finite value counts as no improvement.
        """
        value = row.get(self.metric)
        if value is not None and math.isfinite(value):
            if self.sign * value < self.best - self.rule.min_delta:
                self.best, self.since_best = self.sign * value, 0
                return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        """Whether ``patience`` evaluations in a row brought no improvement."""
        patience = self.rule.patience
        return patience is not None and self.since_best >= int(patience)

    def state_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "best": self.best, "since_best": self.since_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state; one of another metric (the config changed) starts afresh."""
        if state.get("metric") == self.metric:
            self.best, self.since_best = float(state["best"]), int(state["since_best"])
