"""The whole training job: read data, fit targets, train, evaluate, write metrics and plots.

``run_training(run_config, out_dir)`` is what ``eqv2 train`` calls; ``evaluate_checkpoint`` is
``eqv2 evaluate``. Outputs in ``out_dir``: ``checkpoint.pt`` (latest, with training state),
``best.pt`` (best validation force MAE, EMA weights), ``final.pt`` (EMA weights at the end),
``log.csv``, a TensorBoard event file, ``metrics.json``, ``learning_curves.png``,
``parity_<split>.png``, ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from eqv2.atomic import atomic_write_path, write_json
from eqv2.data.readers import read_structures
from eqv2.data.records import to_atoms
from eqv2.data.targets import NUM_ELEMENTS, fit_element_references, fit_normalizers
from eqv2.graph import fixed_mask
from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.model.loading import load_model, save_model
from eqv2.model.potential import Potential
from eqv2.train.distributed import distributed_session, resolve_device
from eqv2.train.metrics import format_metrics, s2ef_metrics
from eqv2.train.plots import learning_curves, parity_plots
from eqv2.train.run_config import DataConfig, RunConfig
from eqv2.train.trainer import CHECKPOINT_NAME, LabelledSet, Trainer


def read_labelled(path: str | Path, data: DataConfig, name: str) -> LabelledSet:
    """Structures with energy and force labels from any supported file (errors name it)."""
    records = read_structures(
        path, energy_key=data.energy_key, forces_key=data.forces_key, require=("energy", "forces")
    )
    return LabelledSet.from_atoms([to_atoms(r) for r in records], name)


def fit_targets(
    train: LabelledSet, data: DataConfig
) -> tuple[dict[str, dict[str, float]], np.ndarray | None]:
    """Normalisers and element references from the training set (or the user's E0s)."""
    from ase.data import atomic_numbers

    numbers = [a.numbers for a in train.structures]
    refs = None
    if data.e0s:
        refs = np.zeros(NUM_ELEMENTS)
        for symbol, value in data.e0s.items():
            if symbol not in atomic_numbers:
                raise ValueError(f"data.e0s: unknown element {symbol!r}; use symbols like 'Cu'.")
            refs[atomic_numbers[symbol]] = float(value)
    elif data.linear_references:
        refs = fit_element_references(numbers, train.energies)
    normalizers = fit_normalizers(train.energies, train.forces, numbers, refs)
    return {k: dict(v) for k, v in normalizers.items()}, refs


def _atom_index(data: LabelledSet) -> tuple[np.ndarray, np.ndarray]:
    """Structure index and fixed flag of every atom of ``data``, in order."""
    batch = np.repeat(np.arange(len(data.structures)), data.natoms)
    return batch, np.concatenate([fixed_mask(a) for a in data.structures])


def _predict_set(potential: Potential, data: LabelledSet, batch_size: int = 8) -> dict[str, Any]:
    results = potential.predict(data.structures, batch_size=batch_size)
    return {
        "energy": np.array([r["energy"] for r in results]),
        "forces": np.concatenate([r["forces"] for r in results]),
    }


def evaluate_set(
    potential: Potential, data: LabelledSet, free_atoms_only: bool = True
) -> tuple[dict[str, float], dict[str, Any]]:
    """S2EF metrics of ``potential`` on ``data`` and the predictions."""
    pred = _predict_set(potential, data)
    batch, fixed = _atom_index(data)
    metrics = s2ef_metrics(
        pred["energy"], data.energies, pred["forces"], np.concatenate(data.forces), batch, fixed,
        free_atoms_only,
    )  # fmt: skip
    return metrics, pred


def baseline_metrics(
    data: LabelledSet,
    free_atoms_only: bool = True,
    energy: float | None = None,
    element_references: np.ndarray | None = None,
) -> dict[str, float]:
    """A model-free baseline, for scale: zero forces, and per structure the energy ``energy``
    (e.g. the training set's mean; default this set's own mean) or, with
    ``element_references``, the sum of the atoms' reference energies (a composition-only
    model)."""
    batch, fixed = _atom_index(data)
    forces = np.concatenate(data.forces)
    if element_references is not None:
        refs = np.asarray(element_references, dtype=np.float64)
        predicted = np.array([refs[a.numbers].sum() for a in data.structures])
    else:
        mean = data.energies.mean() if energy is None else energy
        predicted = np.full(len(data.energies), mean)
    return s2ef_metrics(
        predicted, data.energies, np.zeros_like(forces), forces, batch, fixed, free_atoms_only
    )


def run_training(
    run: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    init_from: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate every split with the final EMA weights, write metrics and plots.

    ``resume`` continues the run in ``out_dir`` exactly; ``init_from`` (or
    ``run.finetune.init_from``) starts a new run from a checkpoint's weights
    (`eqv2.train.finetune`). Under torchrun every process trains (data-parallel, see
    `Trainer`); rank 0 then evaluates the splits and writes ``final.pt``, the metrics and the
    plots alone, and returns the metrics; the other processes return an empty dict.
    """
    out = Path(out_dir)
    if not run.data.train:
        raise ValueError(f"{run.source}: data.train is not set; pass --train PATH.")
    train = read_labelled(run.data.train, run.data, "train")
    val = read_labelled(run.data.val, run.data, "val") if run.data.val else None
    test = read_labelled(run.data.test, run.data, "test") if run.data.test else None

    device = resolve_device(run.train.device)
    with distributed_session(device) as env:
        trainer = _fit(run, out, train, val, resume, init_from, progress and env.is_main)
    if not env.is_main:
        return {}
    potential = trainer.potential
    with trainer.evaluation_weights():  # the final model holds the EMA weights
        save_model(potential, out / "final.pt", extra={"step": trainer.step})
    final = load_model(out / "final.pt", device=device)

    metrics: dict[str, Any] = {}
    free_only = run.train.free_atoms_only
    train_mean = float(train.energies.mean())
    refs = potential.element_references.cpu().numpy() if potential.has_element_references else None
    for name, data in (("train", train), ("val", val), ("test", test)):
        if data is None:
            continue
        metrics[name], pred = evaluate_set(final, data, free_only)
        # model-free baselines with training statistics: mean energy; composition only
        metrics[f"{name}_baseline"] = baseline_metrics(data, free_only, energy=train_mean)
        if refs is not None:
            metrics[f"{name}_element_refs"] = baseline_metrics(
                data, free_only, element_references=refs
            )
        if name != "train":
            parity_plots(data.energies, pred["energy"], np.concatenate(data.forces),
                         pred["forces"], out / f"parity_{name}.png", f"{name} set")  # fmt: skip
    write_json(metrics, out / "metrics.json")
    learning_curves(out / "log.csv", out / "learning_curves.png")
    return metrics


def _fit(
    run: RunConfig,
    out: Path,
    train: LabelledSet,
    val: LabelledSet | None,
    resume: bool,
    init_from: str | Path | None,
    progress: bool,
) -> Trainer:
    """Build the potential and the trainer (on every process) and train."""
    if init_from is not None:
        run = replace(run, finetune=replace(run.finetune, init_from=str(init_from)))
    torch.manual_seed(run.train.seed)  # the same initial weights on every process
    if run.finetune.init_from:  # checkpoint weights; fresh optimiser, schedule and step count
        from eqv2.train.finetune import start_finetune  # (it imports this module)

        potential, run = start_finetune(run, train, out)
    else:
        normalizers, refs = fit_targets(train, run.data)
        potential = Potential(
            EquiformerV2(run.model), normalizers, None if refs is None else torch.as_tensor(refs)
        )
    trainer = Trainer(potential, train, out, run.train, val=val)
    if trainer.dist.is_main:
        with atomic_write_path(out / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(run.to_dict(), sort_keys=False))
    if resume and (out / CHECKPOINT_NAME).exists():
        trainer.resume()

    bar = None
    if progress:
        from tqdm import tqdm

        # disable=None: no bar when the output is not a terminal (logs, CI)
        bar = tqdm(
            total=run.train.max_steps, initial=trainer.step, desc="train", unit="step",
            dynamic_ncols=True, disable=None, mininterval=0.5,
        )  # fmt: skip

    def on_step(row: dict[str, Any]) -> None:
        if bar is not None:
            bar.set_postfix(
                loss=f"{row['loss']:.4f}", struct_s=f"{row['structures_per_s']:.1f}", refresh=False
            )
            bar.update(row["step"] - bar.n)

    trainer.on_step = on_step
    try:
        trainer.fit()
    finally:
        if bar is not None:
            bar.close()
    return trainer


def evaluate_checkpoint(
    checkpoint: str | Path, data_path: str | Path, data: DataConfig | None = None
) -> dict[str, float]:
    """``eqv2 evaluate``: S2EF metrics of a checkpoint on a labelled file."""
    data = data or DataConfig()
    potential = load_model(checkpoint)
    labelled = read_labelled(data_path, data, Path(data_path).name)
    metrics, _ = evaluate_set(potential, labelled)
    return metrics


__all__ = [
    "baseline_metrics",
    "evaluate_checkpoint",
    "evaluate_set",
    "fit_targets",
    "format_metrics",
    "read_labelled",
    "run_training",
]
