"""The whole training job: read data, fit targets, train, evaluate, write metrics and plots.

``run_training(run_config, out_dir)`` is what ``eqv2 train`` calls; ``score_checkpoint`` is
``eqv2 evaluate``. Outputs in ``out_dir``: ``checkpoint.pt`` (latest, with training state),
``best.pt`` (best validation force MAE, EMA weights), ``final.pt`` (EMA weights at the end),
``log.csv``, a TensorBoard event file, ``metrics.json``, ``learning_curves.png``,
``parity_<split>.png``, ``config.yaml``.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from eqv2.allocator import tune_allocator
from eqv2.data import open_dataset
from eqv2.deprecation import deprecated_alias
from eqv2.model.checkpoint import CheckpointError, load_checkpoint
from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.model.loading import load_model, save_model
from eqv2.model.potential import Potential
from eqv2.safe_io import atomic_write_path, write_json
from eqv2.train.distributed import distributed_session, resolve_device
from eqv2.train.evaluation import score_split
from eqv2.train.finetune import start_finetune
from eqv2.train.loader import LoaderConfig, TrainingDataset
from eqv2.train.metrics import format_metrics
from eqv2.train.plots import learning_curves, parity_plots
from eqv2.train.prediction_file import prediction_writer
from eqv2.train.progress import TrainingProgress
from eqv2.train.run_config import DataConfig, RunConfig
from eqv2.train.run_dir import RunDirectoryError, check_run_dir, clear_run, run_lock
from eqv2.train.target_fit import (
    FIT_SAMPLE,
    TargetStatistics,
    fit_sample,
    fit_targets,
    stream_statistics,
)
from eqv2.train.task_config import task_of
from eqv2.train.trainer import CHECKPOINT_NAME, Trainer


def read_labelled(
    path: str | Path, data: DataConfig, name: str, s2ef: bool = True
) -> TrainingDataset:
    """A random-access dataset over any supported file (`eqv2.data.open_dataset`: only its
    index is loaded); with ``s2ef``, records lacking energy or forces are reported when read
    (named targets are checked when batches are read)."""
    return open_dataset(
        path, energy_key=data.energy_key, forces_key=data.forces_key, stress_key=data.stress_key,
        require=("energy", "forces") if s2ef else (),
    )  # fmt: skip


def loader_config(data: DataConfig) -> LoaderConfig:
    """The input-pipeline settings of a run's ``data`` section."""
    return LoaderConfig(data.num_workers, data.prefetch_factor, data.pin_memory)


def check_resumable(run: RunConfig, out: Path, init_from: str | Path | None = None) -> None:
    """Refuse to resume ``out`` with a model config other than its checkpoint's (before
    anything is written), naming each differing key."""
    saved = load_checkpoint(out / CHECKPOINT_NAME)["config"]
    mine = run.model.to_dict()
    # a fine-tuning run's model is the checkpoint's: only the keys its config sets count
    keys = run.model_keys if (init_from or run.finetune.init_from) else list(mine)
    differ = [f"model.{k}={mine[k]!r} (checkpoint: {saved[k]!r})"
              for k in keys if k in saved and k in mine and mine[k] != saved[k]]  # fmt: skip
    if differ:
        raise RunDirectoryError(
            f"--resume: the model config differs from the run's checkpoint "
            f"{out / CHECKPOINT_NAME}: {'; '.join(differ)}. A resumed run keeps its model: "
            "restore these values (the run's config.yaml has them), or start a new run from "
            "its weights with --init."
        )


def run_training(
    run: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train, evaluate every split with the final EMA weights, write metrics and plots.

    ``resume`` continues the run in ``out_dir`` exactly; ``init_from`` (or
    ``run.finetune.init_from``) starts a new run from a checkpoint's weights
    (`eqv2.train.finetune`). A directory that already holds a run is refused unless
    ``resume`` or ``overwrite`` (which deletes the old run first); the directory is locked
    while training (`eqv2.train.run_dir`). Under torchrun every process trains
    (data-parallel, see `Trainer`) and evaluates its share of every split; rank 0 writes
    ``final.pt``, the metrics and the plots, and returns the metrics; the other processes
    return an empty dict.
    """
    tune_allocator()  # training churns through large temporaries: reuse freed memory
    out = Path(out_dir)
    if not run.data.train:
        raise ValueError(f"{run.source}: data.train is not set; pass --train PATH.")
    check_run_dir(out, resume, overwrite)
    if resume:
        check_resumable(run, out, init_from)
    s2ef = run.task.s2ef is not None
    train = read_labelled(run.data.train, run.data, "train", s2ef)
    val = read_labelled(run.data.val, run.data, "val", s2ef) if run.data.val else None
    test = read_labelled(run.data.test, run.data, "test", s2ef) if run.data.test else None

    device = resolve_device(run.train.device)
    splits = {"train": train, "val": val, "test": test}
    with distributed_session(device) as env:
        # rank 0 alone writes into the directory, so it alone locks it
        with run_lock(out) if env.is_main else contextlib.nullcontext():
            if overwrite and env.is_main:
                clear_run(out)
            trainer, stats = _fit(run, out, train, val, resume, init_from, progress and env.is_main)
            metrics = _evaluate(trainer, run, out, stats, splits)
            trainer.release_distributed()  # before the session destroys the process group
    return metrics if env.is_main else {}


def _evaluate(
    trainer: Trainer, run: RunConfig, out: Path, stats: TargetStatistics, splits: dict[str, Any]
) -> dict[str, Any]:
    """Every split with the final (EMA) weights, on every process; rank 0 writes the files."""
    potential, is_main = trainer.potential, trainer.dist.is_main
    task = trainer.task
    train_mean = stats.energy / stats.n if stats.n else 0.0
    target_means = {name: stats.target_mean(name) for name in task.target_names}
    metrics: dict[str, Any] = {}
    with trainer.evaluation_weights():  # the final model holds the EMA weights
        if is_main:
            save_model(potential, out / "final.pt", extra=baseline_extra(trainer.step, stats))
        for name, data in splits.items():
            limit = scoring_limit(run, name)
            if data is None or limit == 0:
                continue
            sample = None if limit is None else fit_sample(len(data), limit, run.train.seed)
            result = score_split(
                potential, data, name=name, train_mean_energy=train_mean,
                train_mean_stress=stats.mean_stress(), free_atoms_only=run.train.free_atoms_only,
                indices=sample, loader=trainer.loader_config, task=task,
                train_mean_targets=target_means,
            )  # fmt: skip
            metrics[name] = result.metrics
            # model-free baselines with training statistics: mean energy; composition only
            metrics[f"{name}_baseline"] = result.baseline
            if result.element_refs is not None:
                metrics[f"{name}_element_refs"] = result.element_refs
            if name != "train" and is_main and task.s2ef is not None:
                p = result.parity_arrays()
                parity_plots(p["energy_ref"], p["energy_pred"], p["forces_ref"], p["forces_pred"],
                             out / f"parity_{name}.png", f"{name} set")  # fmt: skip
    if is_main:
        write_json(metrics, out / "metrics.json")
        learning_curves(out / "log.csv", out / "learning_curves.png")
    return metrics


def scoring_limit(run: RunConfig, split: str) -> int | None:
    """How many structures of ``split`` the final scoring reads: 0 (not scored), a limit
    (a seeded subsample when the split is larger), or None (all): ``train.final_scoring``,
    and ``data.train_eval_structures`` for the training split."""
    scoring = run.train.final_scoring
    if split not in scoring.splits:
        return 0
    limits = [n for n in (scoring.max_structures,) if n is not None]
    if split == "train":
        limits.append(max(0, run.data.train_eval_structures))
    return min(limits) if limits else None


def baseline_extra(step: int, stats: TargetStatistics) -> dict[str, Any]:
    """``extra`` of ``final.pt``: the step and the training statistics of the model-free
    baselines, so ``eqv2 evaluate`` reports the same baselines as the run's metrics.json."""
    mean_stress = stats.mean_stress()
    return {
        "step": step,
        # 0 without energy labels (named targets only): no energy baseline to report
        "train_mean_energy": float(stats.energy / stats.n) if stats.n else 0.0,
        "train_mean_stress": None if mean_stress is None else mean_stress.tolist(),
    }


def _fit(
    run: RunConfig,
    out: Path,
    train: TrainingDataset,
    val: TrainingDataset | None,
    resume: bool,
    init_from: str | Path | None,
    progress: bool,
) -> tuple[Trainer, TargetStatistics]:
    """Build the potential and the trainer (on every process) and train."""
    if init_from is not None:
        run = replace(run, finetune=replace(run.finetune, init_from=str(init_from)))
    loader = loader_config(run.data)
    # one pass over the training set (or its subsample) serves targets and baselines
    task = run.task
    stats = stream_statistics(train, loader.num_workers, FIT_SAMPLE, run.train.seed, task=task)
    torch.manual_seed(run.train.seed)  # the same initial weights on every process
    if run.finetune.init_from:  # checkpoint weights; fresh optimiser, schedule and step count
        potential, run = start_finetune(run, stats, out)
    else:
        normalizers, refs = fit_targets(stats, run.data)
        potential = Potential(
            EquiformerV2(run.model), normalizers, None if refs is None else torch.as_tensor(refs)
        )
    trainer = Trainer(potential, train, out, run.train, val=val, loader=loader, task=task)
    if trainer.dist.is_main:
        with atomic_write_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    if resume:
        trainer.resume()

    # a bar on a terminal, log lines otherwise (eqv2.train.progress)
    view = TrainingProgress(trainer.budget, trainer.step, trainer.clock.last) if progress else None
    trainer.on_step = None if view is None else view.update
    try:
        trainer.fit()
    finally:
        if view is not None:
            view.close()
    return trainer, stats


def training_statistics(checkpoint: str | Path) -> dict[str, Any] | None:
    """The training statistics `baseline_extra` stored in an eqv2 checkpoint (``final.pt``
    of a training run), or None (another file, or an older run)."""
    try:
        extra = load_checkpoint(checkpoint).get("extra") or {}
    except CheckpointError:  # e.g. a fairchem file
        return None
    return extra if "train_mean_energy" in extra else None


def evaluate_checkpoint_on(
    checkpoint: str | Path,
    data_path: str | Path,
    data: DataConfig | None = None,
    predictions: str | Path | None = None,
    parity: str | Path | None = None,
) -> dict[str, Any]:
    """``eqv2 evaluate``: a checkpoint's S2EF metrics on a labelled file, with the model-free
    baselines of a training run's ``metrics.json``; optionally every structure's predictions
    (extxyz, `eqv2.train.prediction_file`) and parity plots (PNG).

    Returns ``{"metrics", "baseline", "element_refs", "baseline_statistics"}``: ``baseline``
    predicts zero forces and the training set's mean energy (and mean stress) — from the
    checkpoint when its run stored them (``final.pt``), else the evaluated set's own means
    (``baseline_statistics`` says which); ``element_refs`` predicts zero forces and the sum of
    the checkpoint's element references (None without references).
    """
    data = data or DataConfig()
    potential = load_model(checkpoint)
    name = Path(data_path).name
    task = task_of(potential)
    s2ef = task.s2ef is not None
    if predictions and not s2ef:
        raise ValueError(
            f"{checkpoint}: --predictions writes energy, forces and stress per structure, and "
            f"this model predicts named targets only ({', '.join(task.target_names)}); drop "
            "--predictions (the metrics and baselines are still reported)."
        )
    labelled = read_labelled(data_path, data, name, s2ef)
    loader = loader_config(data)
    stats, source = training_statistics(checkpoint), "training set"
    if not s2ef:  # named targets only: their baselines come from the split itself
        stats, source = stats or {"train_mean_energy": 0.0}, "none"
    elif stats is None:  # the evaluated set's own means, by the training's streaming pass
        own = stream_statistics(labelled, loader.num_workers, FIT_SAMPLE, 0, name)
        stats, source = baseline_extra(0, own), "evaluated set"
    mean_stress = stats.get("train_mean_stress")
    writer = prediction_writer(predictions, labelled) if predictions else contextlib.nullcontext()
    with writer as on_batch:
        result = score_split(
            potential, labelled, name=name, train_mean_energy=stats["train_mean_energy"],
            train_mean_stress=None if mean_stress is None else np.asarray(mean_stress),
            loader=loader, on_batch=on_batch, task=task,
        )  # fmt: skip
    if parity is not None and s2ef:
        p = result.parity_arrays()
        parity_plots(p["energy_ref"], p["energy_pred"], p["forces_ref"], p["forces_pred"],
                     parity, name)  # fmt: skip
    return {
        "metrics": result.metrics, "baseline": result.baseline,
        "element_refs": result.element_refs, "baseline_statistics": source,
    }  # fmt: skip


def score_checkpoint(
    checkpoint: str | Path, data_path: str | Path, data: DataConfig | None = None
) -> dict[str, float]:
    """S2EF metrics of a checkpoint on a labelled file (`evaluate_checkpoint_on`'s metrics)."""
    return evaluate_checkpoint_on(checkpoint, data_path, data)["metrics"]


__all__ = [
    "baseline_extra",
    "check_resumable",
    "evaluate_checkpoint_on",
    "evaluate_checkpoint",
    "score_checkpoint",
    "fit_targets",
    "loader_config",
    "format_metrics",
    "read_labelled",
    "run_training",
    "scoring_limit",
    "training_statistics",
]


evaluate_checkpoint = deprecated_alias(score_checkpoint, "eqv2.train.workflow.evaluate_checkpoint")
