"""What a training run shows while it runs: step, loss, learning rate and the time left.

On a terminal, a tqdm bar over the budget (steps, epochs or time, `eqv2.train.budget`: the
bar is the largest fraction used of any of them); otherwise — a log file, SLURM output, CI —
one line every ``interval`` seconds and at each validation, so logs stay readable. The time
left (ETA) extrapolates the wall time this process has trained so far over the fraction of the
budget it used.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from eqv2.train.budget import Budget, format_duration

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """Shows a run's progress through ``budget`` on ``stream`` (default: stderr).

    Args:
        budget: the run's budgets.
        start_step, start_time: where the run starts (a resumed run: its checkpoint's step and
            clock reading), so the ETA counts only what this process trained.
        stream: where to write; a tqdm bar when it is a terminal (``tty`` overrides that).
        interval: seconds between log lines when there is no bar.
    """

    def __init__(
        self,
        budget: Budget,
        start_step: int = 0,
        start_time: float = 0.0,
        stream: TextIO | None = None,
        interval: float = 30.0,
        tty: bool | None = None,
    ) -> None:
        self.budget = budget
        self.stream = stream or sys.stderr
        self.interval = interval
        self._start_fraction = budget.progress(start_step, start_time)
        self._t0 = time.perf_counter()
        self._last_line = -math.inf
        self._bar = None
        if self.stream.isatty() if tty is None else tty:
            from tqdm import tqdm

            self._bar = tqdm(
                total=1.0, initial=self._start_fraction, file=self.stream, dynamic_ncols=True,
                bar_format="train {percentage:3.0f}%|{bar}| {postfix}", mininterval=0.5,
            )  # fmt: skip

    def eta(self, fraction: float) -> float:
        """Wall seconds left when ``fraction`` of the budget is used (inf before progress)."""
        done = fraction - self._start_fraction
        if done <= 0:
            return math.inf
        return (time.perf_counter() - self._t0) * (1.0 - fraction) / done

    def describe(self, row: dict[str, Any]) -> str:
        """``step 120 (12%) loss 0.1234 lr 2.00e-04 eta 0:05:12`` for a log ``row``."""
        fraction = self.budget.progress(int(row["step"]), float(row.get("time", 0.0)))
        text = (
            f"step {row['step']}"
            + (f"/{self.budget.max_steps}" if self.budget.max_steps is not None else "")
            + f" ({100 * fraction:.0f}%) loss {row['loss']:.4g} lr {row['lr']:.3g}"
        )
        if self.budget.max_time is not None:
            text += f" time {format_duration(row.get('time', 0.0))}/"
            text += format_duration(self.budget.max_time)
        if row.get("val_force_mae") is not None:
            text += f" val_force_mae {row['val_force_mae']:.4g}"
        return f"{text} eta {format_duration(self.eta(fraction))}"

    def update(self, row: dict[str, Any]) -> None:
        """Show a step's ``row`` (``step``, ``loss``, ``lr``, ``time``, optional ``val_*``)."""
        fraction = self.budget.progress(int(row["step"]), float(row.get("time", 0.0)))
        if self._bar is not None:
            self._bar.set_postfix_str(self.describe(row), refresh=False)
            self._bar.update(fraction - self._bar.n)
            return
        now = time.perf_counter()
        if now - self._last_line >= self.interval or "val_force_mae" in row or fraction >= 1:
            print(self.describe(row), file=self.stream, flush=True)
            self._last_line = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
