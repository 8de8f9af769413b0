"""PNG figures for a training run: learning curves and energy/force parity plots."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eqv2.safe_io import atomic_write_path  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def learning_curves(log_csv: str | Path, path: str | Path) -> Path:
    """Training losses (log scale) and validation MAEs against the step, from ``log.csv``."""
    with open(log_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{log_csv} has no rows: nothing to plot.")

    def column(name: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(float(r["step"]), float(r[name])) for r in rows if r.get(name) not in ("", None)]
        return (
            (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
            if pairs
            else (
                np.array([]),
                np.array([]),
            )
        )

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    for name in ("loss", "energy_loss", "force_loss"):
        x, y = column(name)
        if len(x):
            ax_loss.plot(x, y, label=name.replace("_", " "))
    ax_loss.set(xlabel="step", ylabel="training loss (normalised units)", yscale="log")
    ax_loss.legend()
    for name, unit in (("val_energy_mae", "eV"), ("val_force_mae", "eV/Å")):
        x, y = column(name)
        if len(x):
            ax_val.plot(x, y, marker="o", label=f"{name.replace('_', ' ')} ({unit})")
    ax_val.set(xlabel="step", ylabel="validation MAE", yscale="log")
    if ax_val.lines:
        ax_val.legend()
    fig.suptitle("EquiformerV2 training")
    return _save(fig, path)


def parity_plots(
    energy_ref: Sequence[float],
    energy_pred: Sequence[float],
    forces_ref: np.ndarray,
    forces_pred: np.ndarray,
    path: str | Path,
    title: str = "test set",
) -> Path:
    """Predicted vs reference energies (per atom if given so) and force components."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, ref, pred, label in (
        (axes[0], np.asarray(energy_ref), np.asarray(energy_pred), "energy (eV)"),
        (axes[1], np.ravel(forces_ref), np.ravel(forces_pred), "force component (eV/Å)"),
    ):
        ax.scatter(ref, pred, s=6, alpha=0.5)
        lo, hi = float(min(ref.min(), pred.min())), float(max(ref.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        mae = float(np.abs(ref - pred).mean())
        ax.set(xlabel=f"reference {label}", ylabel=f"predicted {label}", title=f"MAE {mae:.4g}")
    fig.suptitle(f"Parity, {title}")
    return _save(fig, path)
