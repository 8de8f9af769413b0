"""Per-step training scalars: ``log.csv`` and a TensorBoard event file in the run directory.

``tensorboard --logdir runs/`` shows every run under ``runs/`` with tags ``train/loss``,
``train/energy_loss``, ``train/force_loss``, ``train/lr``, ``train/grad_norm``,
``train/structures_per_s``, ``train/epoch``, ``train/time`` and ``val/energy_mae``,
``val/force_mae``, ``val/force_cos``, ``val/efwt``. A log opened at step T (a resumed run)
first drops what an interrupted run wrote after T: the CSV rows are cut, and the event file
starts with a purge marker at T + 1, so TensorBoard hides the older events from T + 1 on and
no step appears twice.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from pathlib import Path
from typing import Any

from eqv2.safe_io import atomic_write_path

CSV_NAME = "log.csv"
#: Columns of ``log.csv`` (TensorBoard gets every numeric entry of a row).
#: ``time``: seconds of training on the run's clock (``train.max_time_clock``).
CSV_FIELDS = ("step", "epoch", "lr", "loss", "energy_loss", "force_loss", "grad_norm",
              "structures_per_s", "val_energy_mae", "val_force_mae", "time")  # fmt: skip


def truncate_csv(path: str | Path, step: int) -> None:
    """Drop the rows of a step log written after ``step`` (atomically; a missing file is fine)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    if len(kept) == len(rows):
        return
    with atomic_write_path(path) as tmp, open(tmp, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def tensorboard_tag(key: str) -> str:
    """``val_force_mae`` → ``val/force_mae``; anything else → ``train/<key>``."""
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


class ScalarLog:
    """Append rows to ``out_dir/log.csv`` and, optionally, to a TensorBoard event file.

    Args:
        out_dir: the run directory.
        start_step: the last step already trained; rows and events after it are discarded.
        tensorboard: also write TensorBoard events (needs the ``tensorboardX`` package; when it
            cannot be imported a warning is given and only the CSV is written).
        extra_fields: CSV columns after `CSV_FIELDS` (e.g. the stress losses and metrics).
    """

    def __init__(
        self,
        out_dir: str | Path,
        start_step: int = 0,
        tensorboard: bool = True,
        extra_fields: tuple[str, ...] = (),
    ) -> None:
        self.out_dir = Path(out_dir)
        self.fields = CSV_FIELDS + tuple(extra_fields)
        self.csv_path = self.out_dir / CSV_NAME
        truncate_csv(self.csv_path, start_step)
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._handle = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._handle, fieldnames=self.fields, extrasaction="ignore")
        if new:
            self._csv.writeheader()
        self._writer = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as exc:
                warnings.warn(
                    f"no TensorBoard log ({exc}); install tensorboardX to get one.", stacklevel=2
                )
            else:
                # the suffix keeps files started within the same second apart, in step order
                self._writer = SummaryWriter(
                    str(self.out_dir),
                    purge_step=start_step + 1,
                    filename_suffix=f".{start_step:010d}.{os.getpid()}",
                )

    def write(self, row: dict[str, Any]) -> None:
        """Log one step: ``row["step"]`` and any scalars (None and NaN are left out)."""
        self._csv.writerow({k: row.get(k) for k in self.fields})
        self._handle.flush()
        if self._writer is None:
            return
        step = int(row["step"])
        for key, value in row.items():
            if key == "step" or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(tensorboard_tag(key), float(value), step)

    def flush(self) -> None:
        """Write pending TensorBoard events to disk (the CSV is flushed on every row)."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self._handle.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ScalarLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
