"""S2EF training loop: the paper's recipe on a list of labelled structures.

One step: an atom-balanced batch → graph → model (raw, normalised units) → λ_E·energy loss +
λ_F·force L2MAE against normalised targets → backward → gradient-norm clipping → AdamW → LR
schedule → EMA. Validation uses the EMA weights. Checkpoints (eqv2 format, written atomically)
hold the weights, normalisers, element references and the complete training state — optimiser,
scheduler, EMA, RNG, position in the epoch — so ``resume`` after a crash continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms

from eqv2.atomic import atomic_write_path
from eqv2.model.checkpoint import load_checkpoint
from eqv2.model.gradients import energy_derivatives
from eqv2.model.loading import save_model
from eqv2.model.potential import Potential
from eqv2.train.batching import atom_balanced_batches, epoch_order
from eqv2.train.ema import EMA
from eqv2.train.losses import s2ef_loss
from eqv2.train.metrics import MetricAccumulator
from eqv2.train.optim import make_optimizer

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"


@dataclass
class TrainerConfig:
    """Optimisation settings (names follow the paper's recipe)."""

    max_steps: int = 1000
    lr: float = 2e-4
    weight_decay: float = 1e-3
    warmup_steps: int = 100
    warmup_factor: float = 0.2
    lr_min_factor: float = 0.01
    max_atoms_per_batch: int = 512
    max_structures_per_batch: int | None = None
    energy_coefficient: float = 1.0
    force_coefficient: float = 1.0
    energy_loss: str = "mae"
    free_atoms_only: bool = True
    grad_clip: float | None = 100.0
    ema_decay: float | None = 0.999
    checkpoint_every: int = 100
    eval_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}: must be at least 1.")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}: must be positive.")


@dataclass
class LabelledSet:
    """Structures with their energy (eV) and force (eV/Å) labels, checked once up front."""

    structures: list[Atoms]
    energies: np.ndarray
    forces: list[np.ndarray]
    natoms: np.ndarray

    @classmethod
    def from_atoms(cls, structures: Sequence[Atoms], name: str = "dataset") -> LabelledSet:
        energies, forces = [], []
        for i, atoms in enumerate(structures):
            label = f"{name} structure {i}" + (
                f" ({atoms.info['name']!r})" if "name" in atoms.info else ""
            )
            if atoms.calc is None:
                raise ValueError(
                    f"{label} has no energy/forces (no calculator results); attach them, e.g. "
                    "read an extxyz file written with energies and forces."
                )
            try:
                energy = float(atoms.get_potential_energy())
                f = np.asarray(atoms.get_forces(apply_constraint=False), dtype=np.float64)
            except Exception as exc:  # ASE raises several types for missing properties
                raise ValueError(f"{label}: cannot read energy/forces ({exc}).") from exc
            if not math.isfinite(energy) or not np.isfinite(f).all():
                raise ValueError(f"{label} has a non-finite energy or force label; fix or drop it.")
            energies.append(energy)
            forces.append(f)
        return cls(
            list(structures),
            np.asarray(energies),
            forces,
            np.array([len(a) for a in structures]),
        )


class Trainer:
    """Train ``potential`` on ``train`` (and evaluate on ``val``), writing to ``out_dir``.

    ``out_dir`` receives ``checkpoint.pt`` (latest, full training state), ``best.pt`` (best
    validation force MAE, EMA weights) and ``log.csv``.
    """

    def __init__(
        self,
        potential: Potential,
        train: Sequence[Atoms] | LabelledSet,
        out_dir: str | Path,
        config: TrainerConfig | None = None,
        val: Sequence[Atoms] | LabelledSet | None = None,
        on_step: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.potential = potential
        self.model = potential.model
        self.config = config or TrainerConfig()
        self.train_set = (
            train if isinstance(train, LabelledSet) else LabelledSet.from_atoms(train, "train")
        )
        self.val_set = None
        if val is not None:
            self.val_set = (
                val if isinstance(val, LabelledSet) else LabelledSet.from_atoms(val, "val")
            )
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.on_step = on_step
        c = self.config
        self.optimizer, self.scheduler = make_optimizer(
            self.model, c.lr, c.weight_decay, c.max_steps, c.warmup_steps, c.warmup_factor,
            c.lr_min_factor,
        )  # fmt: skip
        self.ema = EMA(self.model, c.ema_decay) if c.ema_decay else None
        # training on −dE/dx needs second derivatives through the S2 activations
        self.model.differentiable_twice = self.potential.conservative
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_force_mae = math.inf
        self._batches = self._epoch_batches(0)

    # -- data -------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        order = epoch_order(len(self.train_set.structures), self.config.seed, epoch)
        return atom_balanced_batches(
            order,
            self.train_set.natoms,
            self.config.max_atoms_per_batch,
            self.config.max_structures_per_batch,
        )

    def _targets(self, data: LabelledSet, indices: list[int], graph: dict) -> tuple:
        """Normalised energy and force targets for a batch (what the raw model predicts)."""
        norm = self.potential.normalizers
        refs = self.potential.element_references.numpy()
        energies = np.array(
            [
                data.energies[i]
                - (
                    refs[data.structures[i].numbers].sum()
                    if self.potential.has_element_references
                    else 0.0
                )
                for i in indices
            ]
        )
        dtype, device = graph["pos"].dtype, graph["pos"].device
        e_norm, f_norm = norm["energy"], norm["forces"]
        e = (torch.as_tensor(energies, dtype=dtype, device=device) - e_norm["mean"]) / e_norm["std"]
        f = torch.as_tensor(
            np.concatenate([data.forces[i] for i in indices]), dtype=dtype, device=device
        )
        if self.potential.conservative:  # forces are −d(normalised E)/dx: scaled like energies
            return e, f / e_norm["std"]
        return e, (f - f_norm["mean"]) / f_norm["std"]

    # -- one optimisation step ----------------------------------------------------------------
    def train_step(self, indices: list[int]) -> dict[str, float]:
        c = self.config
        self.model.train()
        graph = self.potential.build_graph([self.train_set.structures[i] for i in indices])
        target_e, target_f = self._targets(self.train_set, indices, graph)
        if self.potential.conservative:
            out = energy_derivatives(lambda g: self.model(g)["energy"], graph, create_graph=True)
        else:
            out = self.model(graph)
        loss, parts = s2ef_loss(
            out, target_e, target_f, graph["natoms"], graph["fixed"], c.energy_coefficient,
            c.force_coefficient, c.energy_loss, c.free_atoms_only,
        )  # fmt: skip
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float("nan")
        if c.grad_clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": float(loss.detach()), **parts, "grad_norm": grad_norm}

    # -- evaluation ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data: LabelledSet, batch_structures: int = 8) -> dict[str, float]:
        """S2EF metrics in eV and eV/Å (EMA weights when training keeps an EMA)."""
        acc = MetricAccumulator(free_atoms_only=self.config.free_atoms_only)
        context = self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()
        with context:
            self.potential.eval()
            for start in range(0, len(data.structures), batch_structures):
                idx = list(range(start, min(start + batch_structures, len(data.structures))))
                graph = self.potential.build_graph([data.structures[i] for i in idx])
                out = self.potential(graph)
                acc.update(
                    out["energy"],
                    torch.as_tensor(data.energies[idx]),
                    out["forces"],
                    torch.as_tensor(np.concatenate([data.forces[i] for i in idx])),
                    graph["batch"],
                    graph["fixed"],
                )
        return acc.compute()

    # -- checkpoints -----------------------------------------------------------------------
    def save(self, path: Path | None = None) -> Path:
        path = path or self.out_dir / CHECKPOINT_NAME
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_force_mae": self.best_force_mae,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": torch.get_rng_state(),
            "trainer_config": dataclasses.asdict(self.config),
        }
        return save_model(self.potential, path, extra={"training_state": state})

    def resume(self, path: Path | None = None) -> None:
        """Restore weights and the full training state from a checkpoint written by `save`."""
        path = path or self.out_dir / CHECKPOINT_NAME
        ckpt = load_checkpoint(path)
        state = ckpt["extra"].get("training_state")
        if state is None:
            raise ValueError(f"{path} holds no training state (not written by Trainer.save).")
        with torch.no_grad():
            self.model.load_state_dict(
                {
                    k: v.to(p.dtype)
                    for (k, v), p in zip(
                        ckpt["state_dict"].items(), self.model.state_dict().values(), strict=True
                    )
                }
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.best_force_mae = float(state["best_force_mae"])
        self._batches = self._epoch_batches(self.epoch)
        self._truncate_log()

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint (they will be trained again)."""
        log_path = self.out_dir / "log.csv"
        if not log_path.exists():
            return
        with open(log_path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= self.step]
        with atomic_write_path(log_path) as tmp, open(tmp, "w", newline="") as handle:
            csv.writer(handle).writerows(kept)

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until ``max_steps``; returns the last training losses and validation metrics."""
        c = self.config
        log_path = self.out_dir / "log.csv"
        fields = ["step", "epoch", "lr", "loss", "energy_loss", "force_loss", "grad_norm",
                  "structures_per_s", "val_energy_mae", "val_force_mae"]  # fmt: skip
        new_log = not log_path.exists()
        last: dict[str, Any] = {}
        with open(log_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            if new_log:
                writer.writeheader()
            while self.step < c.max_steps:
                if self.batch_in_epoch >= len(self._batches):
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    self._batches = self._epoch_batches(self.epoch)
                indices = self._batches[self.batch_in_epoch]
                start = time.perf_counter()
                row: dict[str, Any] = {"lr": self.scheduler.get_last_lr()[0]}
                row.update(self.train_step(indices))
                self.batch_in_epoch += 1
                self.step += 1
                rate = len(indices) / (time.perf_counter() - start)
                row.update(step=self.step, epoch=self.epoch, structures_per_s=rate)
                if self.val_set is not None and (
                    self.step % c.eval_every == 0 or self.step == c.max_steps
                ):
                    metrics = self.evaluate(self.val_set)
                    row.update(
                        val_energy_mae=metrics["energy_mae"], val_force_mae=metrics["force_mae"]
                    )
                    last["val"] = metrics
                    if metrics["force_mae"] < self.best_force_mae:
                        self.best_force_mae = metrics["force_mae"]
                        self._save_best()
                writer.writerow({k: row.get(k) for k in fields})
                handle.flush()
                if self.on_step is not None:
                    self.on_step(row)
                if self.step % c.checkpoint_every == 0 or self.step == c.max_steps:
                    self.save()
                last["train"] = row
        return last

    def _save_best(self) -> None:
        context = self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()
        with context:
            save_model(self.potential, self.out_dir / BEST_NAME, extra={"step": self.step})
