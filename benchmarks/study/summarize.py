"""Tabulate and plot the small-data study's runs: test errors, baselines, learning curves.

Reads eqv2 run directories (`metrics.json`, `log.csv` and the `cpu_timeline.csv` that
benchmarks/study/cpu_timeline.py writes) and MACE run directories (`metrics.json`,
`curve.csv` from benchmarks/mace/train_mace.py), prints a Markdown table and writes one
learning-curve plot (validation force MAE against CPU minutes) per dataset.

    python benchmarks/study/summarize.py --plot-dir docs/images \
        3bpa:eqv2:runs/eqv2_3bpa_30 3bpa:mace:runs/mace_3bpa_30 ...
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Run:
    """One training run: its learning curve (CPU s, val force MAE) and final test metrics."""

    dataset: str
    model: str
    path: Path
    cpu_s: np.ndarray
    val_force_mae: np.ndarray
    train_cpu_s: float
    epochs: float | None
    test: dict[str, float]
    zero_force_mae: float
    mean_energy_mae: float


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_eqv2(dataset: str, path: Path) -> Run:
    """An eqv2 run: validation rows of log.csv placed on the CPU timeline by step."""
    metrics = json.loads((path / "metrics.json").read_text())
    timeline = _rows(path / "cpu_timeline.csv")
    t_step = np.array([float(r["step"]) for r in timeline])
    t_cpu = np.array([float(r["cpu_s"]) for r in timeline])
    log = _rows(path / "log.csv")
    val = [r for r in log if r.get("val_force_mae")]
    steps = np.array([float(r["step"]) for r in val])
    last_step = float(log[-1]["step"])
    epochs = float(log[-1]["epoch"]) + 1 if log else None
    return Run(
        dataset=dataset,
        model="eqv2",
        path=path,
        cpu_s=np.interp(steps, t_step, t_cpu),
        val_force_mae=np.array([float(r["val_force_mae"]) for r in val]),
        train_cpu_s=float(np.interp(last_step, t_step, t_cpu)),
        epochs=epochs,
        test=metrics["test"],
        zero_force_mae=metrics["test_baseline"]["force_mae"],
        mean_energy_mae=metrics["test_baseline"]["energy_mae"],
    )


def read_mace(dataset: str, path: Path) -> Run:
    """A MACE run of benchmarks/mace/train_mace.py."""
    metrics = json.loads((path / "metrics.json").read_text())
    curve = _rows(path / "curve.csv")
    return Run(
        dataset=dataset,
        model="MACE",
        path=path,
        cpu_s=np.array([float(r["cpu_s"]) for r in curve]),
        val_force_mae=np.array([float(r["val_force_mae"]) for r in curve]),
        train_cpu_s=metrics["train_cpu_s"],
        epochs=metrics["epochs"],
        test=metrics["test"],
        zero_force_mae=metrics["test_baselines"]["zero_force_mae"],
        mean_energy_mae=metrics["test_baselines"]["mean_energy_mae"],
    )


def val_at(run: Run, cpu_s: float) -> float:
    """The last validation force MAE logged at or before `cpu_s` (nan before the first)."""
    seen = run.val_force_mae[run.cpu_s <= cpu_s]
    return float(seen[-1]) if len(seen) else float("nan")


def table(runs: list[Run]) -> str:
    """A Markdown table of the runs."""
    head = (
        "| dataset | model | train CPU min | epochs | CPU s/epoch | val F MAE @15 min | "
        "test E MAE (eV) | test F MAE (eV/Å) | zero-F | F / zero-F | mean-E |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in runs:
        epochs = r.epochs or float("nan")
        lines.append(
            f"| {r.dataset} | {r.model} | {r.train_cpu_s / 60:.1f} | {epochs:.1f} | "
            f"{r.train_cpu_s / epochs:.0f} | {val_at(r, 900):.4f} | {r.test['energy_mae']:.3f} | "
            f"{r.test['force_mae']:.4f} | {r.zero_force_mae:.4f} | "
            f"{r.test['force_mae'] / r.zero_force_mae:.2f} | {r.mean_energy_mae:.2f} |"
        )
    return head + "\n".join(lines)


def plot(runs: list[Run], plot_dir: Path) -> list[Path]:
    """One PNG per dataset: validation force MAE against CPU minutes, zero-force line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for dataset in sorted({r.dataset for r in runs}):
        fig, ax = plt.subplots(figsize=(5, 3.4))
        chosen = [r for r in runs if r.dataset == dataset]
        for r in chosen:
            ax.plot(r.cpu_s / 60, r.val_force_mae, marker=".", label=f"{r.model} ({r.path.name})")
        ax.axhline(chosen[0].zero_force_mae, color="grey", ls="--", label="zero forces (test)")
        ax.set_xlabel("CPU minutes (1 thread)")
        ax.set_ylabel("validation force MAE (eV/Å)")
        ax.set_yscale("log")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
        fig.tight_layout()
        out = plot_dir / f"small_data_{dataset}.png"
        plot_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="DATASET:eqv2|mace:RUN_DIR")
    parser.add_argument("--plot-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = []
    for spec in args.runs:
        dataset, model, path = spec.split(":", 2)
        reader = {"eqv2": read_eqv2, "mace": read_mace}.get(model)
        if reader is None:
            raise SystemExit(f"{spec}: the model must be eqv2 or mace")
        runs.append(reader(dataset, Path(path)))
    print(table(runs))
    if args.plot_dir is not None:
        for out in plot(runs, args.plot_dir):
            print("wrote", out)


if __name__ == "__main__":
    main()
