"""Training budgets — steps (or epochs, converted to steps) and time — and the LR schedule's
progress through them.

A run ends when the first of its budgets is spent: ``max_steps`` optimiser steps, or
``max_time`` seconds on its clock (``wall``: elapsed real time; ``process``: CPU time of the
training process, `time.process_time`, which other jobs on a shared machine do not inflate).
The warm-up + cosine schedule follows the same budgets: warm-up ends with the first of
``warmup_steps`` / ``warmup_time`` to end, and the cosine's progress is the largest fraction
used of any budget (each counted from its own warm-up), so the learning rate reaches its
minimum exactly when the run stops, whichever budget stops it.

`TrainingClock` measures the time budget: only while training runs (not the setup before
it or the final scoring after it), carried over a ``resume``, and — under torchrun — read on
rank 0 and shared with one all-reduce per step, so every process takes the same learning
rate and stops at the same step.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from eqv2.train.distributed import DistributedEnv, all_reduce_sum
from eqv2.train.optim import warmup_cosine

__all__ = [
    "CLOCKS", "Budget", "TrainingClock", "format_duration", "parse_duration", "schedule_steps",
]  # fmt: skip

#: ``train.max_time_clock`` choices: functions returning seconds on a monotonic clock.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "process": time.process_time}

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|min|m|h|d)?\s*", re.IGNORECASE)


def parse_duration(value: float | int | str | None, name: str = "max_time") -> float | None:
    """Seconds from a number (seconds) or a string such as ``90``, ``30m``, ``1.5h``,
    ``1h30m``, ``2d`` (units s, m/min, h, d; several parts add up). None stays None.

    Raises:
        ValueError: naming ``name`` and the value, for anything else or a non-positive time.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: expected seconds or a duration such as '30m'.")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text, pos, seconds = str(value).strip(), 0, 0.0
        while pos < len(text):
            match = _PART.match(text, pos)
            if match is None or match.end() == pos:
                raise ValueError(
                    f"{name}={value!r}: not a duration. Give seconds (5400) or a number with a "
                    "unit: '90s', '30m', '1.5h', '1h30m', '2d'."
                )
            seconds += float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
            pos = match.end()
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name}={value!r}: must be a positive, finite time.")
    return seconds


def format_duration(seconds: float) -> str:
    """``3725.4`` → ``1:02:05`` (hours:minutes:seconds); ``?`` when not finite."""
    if not math.isfinite(seconds):
        return "?"
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def schedule_steps(config: Any, steps_per_epoch: Callable[[], int]) -> tuple[int | None, int]:
    """``max_steps`` (None: no step budget) and ``warmup_steps`` of a `TrainerConfig`, from
    ``max_epochs`` / ``warmup_epochs`` when it gives them (epochs × ``steps_per_epoch()``,
    called only then: planning an epoch of a large dataset takes a while)."""
    steps, warmup = config.max_steps, config.warmup_steps
    if config.max_epochs is not None:
        steps = max(1, round(config.max_epochs * steps_per_epoch()))
    if config.warmup_epochs is not None:
        warmup = round(config.warmup_epochs * steps_per_epoch())
    return steps, warmup


@dataclass(frozen=True)
class Budget:
    """The limits of a run and its warm-up: ``None`` (or 0 for a warm-up) leaves a dimension
    out. At least one of ``max_steps`` and ``max_time`` must be set."""

    max_steps: int | None
    warmup_steps: int = 0
    max_time: float | None = None
    warmup_time: float | None = None

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_time is None:
            raise ValueError(
                "the run has no budget: set train.max_steps, train.max_epochs or train.max_time."
            )
        if self.max_time is not None and self.warmup_time is not None:
            if self.warmup_time >= self.max_time:
                raise ValueError(
                    f"warmup_time={self.warmup_time} s is not shorter than max_time="
                    f"{self.max_time} s: shorten the warm-up or lengthen the budget."
                )

    @property
    def timed(self) -> bool:
        """Whether the schedule or the stop decision reads the clock."""
        return self.max_time is not None or self.warmup_time is not None

    def exhausted(self, step: int, elapsed: float) -> bool:
        """Whether a run at ``step`` after ``elapsed`` seconds has spent one of its budgets."""
        return (self.max_steps is not None and step >= self.max_steps) or (
            self.max_time is not None and elapsed >= self.max_time
        )

    def progress(self, step: int, elapsed: float) -> float:
        """The largest fraction used of any budget, in [0, 1] (for ETAs and progress bars)."""
        parts = [0.0]
        if self.max_steps is not None:
            parts.append(step / max(1, self.max_steps))
        if self.max_time is not None:
            parts.append(elapsed / self.max_time)
        return min(1.0, max(parts))

    def lr_factor(
        self, step: int, elapsed: float, warmup_factor: float, lr_min_factor: float
    ) -> float:
        """LR multiplier at ``step`` after ``elapsed`` seconds: linear warm-up from
        ``warmup_factor`` to 1, then a cosine to ``lr_min_factor`` at the end of the budget.
        With a step budget alone this is `eqv2.train.optim.cosine_warmup_factor`."""
        warm = [1.0]
        if self.warmup_steps > 0:
            warm.append(step / self.warmup_steps)
        if self.warmup_time:
            warm.append(elapsed / self.warmup_time)
        warm_done = 1.0 if len(warm) == 1 else min(1.0, max(warm[1:]))
        if warm_done < 1.0:
            return warmup_cosine(warm_done, 0.0, warmup_factor, lr_min_factor)
        cosine = [0.0]
        if self.max_steps is not None:
            cosine.append((step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps))
        if self.max_time is not None:
            start = self.warmup_time or 0.0
            cosine.append((elapsed - start) / (self.max_time - start))
        return warmup_cosine(1.0, min(1.0, max(cosine)), warmup_factor, lr_min_factor)


class TrainingClock:
    """Seconds of training on ``read`` (a `CLOCKS` entry), carried across ``resume``.

    Time counts between `start` and `stop` (while the training loop runs); `tick` takes a
    reading once per step — rank 0's, shared with every process when ``sync`` — and keeps it
    as `last`, the value the schedule and the stop decision use, so all processes agree.
    """

    def __init__(self, read: Callable[[], float]) -> None:
        self.read = read
        self.last = 0.0
        self._before = 0.0
        self._origin: float | None = None

    def elapsed(self) -> float:
        """This process's seconds of training so far (not shared)."""
        if self._origin is None:
            return self._before
        return self._before + self.read() - self._origin

    def start(self) -> None:
        """Count from now on (training runs), continuing from the time trained so far."""
        if self._origin is None:
            self._origin = self.read()

    def stop(self) -> None:
        """Stop counting (training paused or ended) until the next `start`."""
        self._before, self._origin = self.elapsed(), None

    def tick(self, sync: bool) -> float:
        """Take a reading (rank 0's under torchrun when ``sync``); returns and keeps it."""
        self.start()
        value = self.elapsed()
        env = DistributedEnv.current()
        if sync and env.world_size > 1:
            mine = value if env.is_main else 0.0
            value = float(all_reduce_sum(torch.tensor([mine], dtype=torch.float64)).item())
        self.last = value
        return value

    def restore(self, last: float, elapsed: float) -> None:
        """Continue a run whose latest reading was ``last`` and that had trained ``elapsed``
        seconds when its checkpoint was written (``last`` decides until the next `tick`)."""
        self.last, self._before, self._origin = float(last), float(elapsed), None
