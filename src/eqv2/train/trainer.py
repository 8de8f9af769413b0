"""S2EF training loop: the paper's recipe on a dataset of labelled structures.

One step: an atom-balanced batch (read and batched by DataLoader workers, `eqv2.train.loader`)
→ graph → model (raw, normalised units) → λ_E·energy loss + λ_F·force L2MAE (+ the stress terms
of a model with a stress head) against normalised targets (`eqv2.train.objective`) → backward →
gradient-norm clipping → AdamW → LR schedule (`eqv2.train.budget`) → EMA. Validation uses the EMA
weights. Checkpoints (eqv2 format, written atomically) hold the weights, normalisers, element
references and the complete training state (`eqv2.train.training_state`), so ``resume`` after
a crash continues exactly as an uninterrupted run would.

Under torchrun (a process group initialised, see `eqv2.train.distributed`) the same loop runs
data-parallel: every process plans the same global batches (`eqv2.train.sampler`), reads and
trains on its atom-balanced share only, through a ``DistributedDataParallel`` model, and the
per-process losses are normalised by the global batch's counts, so the gradients equal one
process's on the whole global batch. With ``grad_accumulation`` K, each process's share runs
as K micro-batches before one optimiser step (the same gradient, less memory). Rank 0
alone writes logs and checkpoints. ``amp="bf16"`` runs the forward pass under bfloat16
autocast (float32 master weights; norms, softmax and the loss in float32).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from eqv2.deprecation import deprecated_alias
from eqv2.model.gradients import energy_derivatives
from eqv2.model.loading import save_model
from eqv2.model.potential import Potential
from eqv2.train.budget import CLOCKS, Budget, TrainingClock, schedule_steps
from eqv2.train.distributed import (
    all_gather_objects,
    all_reduce_sum,
    data_parallel,
    process_group_env,
    resolve_device,
)
from eqv2.train.early_stopping import BestTracker
from eqv2.train.ema import EMA
from eqv2.train.loader import (
    GraphSettings,
    LabelledBatch,
    LoaderConfig,
    StepBatch,
    StepReader,
    TrainingDataset,
    as_dataset,
    iterate,
    make_loader,
)
from eqv2.train.objective import Objective
from eqv2.train.optim import make_optimizer
from eqv2.train.sampler import EpochPlan, StepPlan, StepSampler
from eqv2.train.scalar_log import CSV_FIELDS, ScalarLog
from eqv2.train.targets_spec import TaskSpec
from eqv2.train.trainer_config import AMP_MODES, TrainerConfig
from eqv2.train.training_state import TrainingState
from eqv2.train.validation import Validation

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
__all__ = ["AMP_MODES", "BEST_NAME", "CHECKPOINT_NAME", "Trainer", "TrainerConfig"]


class Trainer:
    """Train ``potential`` on ``train`` (and evaluate on ``val``), writing to ``out_dir``.

    ``train`` and ``val`` are datasets (``len``, ``ds[i]`` → `eqv2.data.Structure`, a
    ``natoms`` index: `eqv2.data.open_dataset`) or lists of ``ase.Atoms`` / `Structure`
    records. Structures are read, checked (energy and forces present and finite; errors name
    the structure) and batched per step, in ``loader.num_workers`` worker processes.

    ``out_dir`` receives ``checkpoint.pt`` (latest, full training state), ``best.pt`` (best
    validation force MAE, or ``config.early_stopping``'s metric; EMA weights), ``log.csv`` and
    a TensorBoard event file. The potential is moved to ``config.device``. Training runs until
    a budget is spent (steps, epochs or time: `eqv2.train.budget`) or early stopping ends it;
    ``clock`` replaces the config's ``max_time_clock`` (a function returning seconds).

    Data-parallel training starts by itself when a ``torch.distributed`` process group is
    initialised (``eqv2 train`` under torchrun does that): each step's global batch — cut
    from the epoch's order by the config's limits, with at least N structures — is split
    among the N processes by atoms, each process reads only its share, the model runs wrapped
    in ``DistributedDataParallel``, validation is shared among the processes and its metrics
    summed, and only rank 0 writes files. Every process must call `fit`, `validate` and `save`
    (they communicate); ``on_step`` is called on every process.

    ``task``: the outputs and loss terms (`eqv2.train.targets_spec.TaskSpec`, e.g. named
    targets without forces); default: the config's energy and force (and stress) terms.
    """

    def __init__(
        self,
        potential: Potential,
        train: TrainingDataset | Sequence[Any],
        out_dir: str | Path,
        config: TrainerConfig | None = None,
        val: TrainingDataset | Sequence[Any] | None = None,
        on_step: Callable[[dict[str, float]], None] | None = None,
        loader: LoaderConfig | None = None,
        clock: Callable[[], float] | None = None,
        task: TaskSpec | None = None,
    ) -> None:
        self.potential = potential
        self.model = potential.model
        self.config = config or TrainerConfig()
        self.loader_config = loader or LoaderConfig()
        self.train_set = as_dataset(train, "train")
        self.val_set = None if val is None else as_dataset(val, "val")
        c = self.config
        self.dist = process_group_env()
        self.device = resolve_device(c.device, self.dist)
        self.potential.to(self.device)
        if c.amp == "bf16" and self.potential.dtype != torch.float32:
            raise ValueError(
                f"amp=bf16 needs a float32 model (the master weights); this one is "
                f"{self.potential.dtype}. Use amp: off for float64 training."
            )
        self.out_dir = Path(out_dir)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.on_step = on_step
        self.plan = EpochPlan(
            self.train_set.natoms, c.seed, c.max_atoms_per_batch, c.max_structures_per_batch,
            self.dist.world_size, c.grad_accumulation,
        )  # fmt: skip
        self.max_steps, warmup_steps = schedule_steps(c, lambda: len(self.plan.global_batches(0)))
        self.budget = budget = Budget(self.max_steps, warmup_steps, c.max_time, c.warmup_time)
        self.clock = timer = TrainingClock(clock or CLOCKS[c.max_time_clock])
        self.optimizer, self.scheduler = make_optimizer(
            self.model, c.lr, c.weight_decay, self.max_steps, warmup_steps, c.warmup_factor,
            c.lr_min_factor, lr_factor=lambda step: budget.lr_factor(
                step, timer.last, c.warmup_factor, c.lr_min_factor),
        )  # fmt: skip
        self.ema = EMA(self.model, c.ema_decay) if c.ema_decay else None
        self.objective = Objective(self.potential, task or TaskSpec(c.loss_spec()))
        self.task = self.objective.spec
        # training on −dE/dx needs second derivatives through the S2 activations
        self.model.differentiable_twice = self.potential.conservative
        self.model.memory_saving = bool(c.memory_saving)
        self.ddp: torch.nn.parallel.DistributedDataParallel | None = None
        if self.dist.world_size > 1:
            self.ddp = data_parallel(self.model, self.device)
            # dropout masks must differ between processes (the weights start equal anyway)
            torch.manual_seed(self.process_seed())
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best = BestTracker(
            c.early_stopping,
            validated=self.val_set is not None,
            default_metric=f"val_{self.task.best_metric()}",
            available=self.task.validation_metrics(),
        )
        self.stopped_early = False
        self.validation = Validation(
            lambda data: self.reader(data, "val"), self.task, self.loader_config, self.device,
            self.dist, self.process_seed(), c.free_atoms_only,
        )  # fmt: skip

    # -- data -------------------------------------------------------------------------------
    def reader(self, data: TrainingDataset, name: str = "train") -> StepReader:
        """A reader batching ``data`` for this model (labels against its element references).

        The training set's stress labels are required when the stress loss is on; other sets'
        are read, where present, for a model with a stress head (stress metrics).
        """
        pot = self.potential
        refs = pot.element_references.cpu().numpy() if pot.has_element_references else None
        if name == "train":
            stress = "require" if self.objective.spec.stress else "ignore"
        else:
            stress = "read" if self.potential.has_stress_head else "ignore"
        return StepReader(data, GraphSettings.of(self.potential), refs, name, stress,
                          self.task.targets, self.task.s2ef is not None)  # fmt: skip

    def _plan_of(self, indices: Sequence[int]) -> StepPlan:
        """This process's plan for the global batch ``indices``."""
        micro = self.plan.share([int(i) for i in indices], self.dist.rank)
        return StepPlan(micro, len(indices), self.epoch, self.batch_in_epoch)

    # -- one optimisation step ----------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The raw model (through DDP when distributed), under autocast when amp is on."""
        model = self.ddp if self.ddp is not None else self.model
        with self._autocast():
            return model(graph)

    def _counted_atoms(self, batch: LabelledBatch) -> int:
        """Atoms of ``batch`` in the force loss: free ones, or all."""
        fixed = batch.graph["fixed"]
        return int((~fixed).sum()) if self.config.free_atoms_only else len(fixed)

    def compute_gradients(self, step: Sequence[int] | StepBatch) -> dict[str, float]:
        """Loss and parameter gradients (``.grad``) of one global batch.

        ``step``: the global batch's structure indices (this process reads its share), or
        this process's prepared `StepBatch`. Each process evaluates its share, micro-batch by
        micro-batch; gradients are then averaged over the processes (DDP), which gives the
        gradient of the global batch's loss because each share's loss is normalised by the
        global batch's structure and atom counts and scaled by the number of processes.
        Returns the global batch's loss and its parts (`LossSpec.part_names`).
        """
        if not isinstance(step, StepBatch):
            step = next(iterate([self.reader(self.train_set)[self._plan_of(step)]]))
        world = self.dist.world_size
        self.model.train()
        micro = [batch.to(self.device) for batch in step.micro]
        counted = sum(self._counted_atoms(b) for b in micro)
        force_atoms = int(all_reduce_sum(torch.tensor([counted], dtype=torch.float64)).item())
        self.optimizer.zero_grad(set_to_none=True)
        names = ("loss", *self.objective.spec.part_names())
        local = torch.zeros(len(names), dtype=torch.float64, device=self.device)
        for k, batch in enumerate(micro):
            sync = self.ddp is None or k == len(micro) - 1
            with contextlib.nullcontext() if sync else self.ddp.no_sync():
                local += self._backward(batch, step.num_structures, force_atoms, world)
        return dict(zip(names, all_reduce_sum(local).tolist(), strict=True))

    def _backward(
        self, batch: LabelledBatch, num_structures: int, force_atoms: int, world: int
    ) -> torch.Tensor:
        """Forward and backward of one micro-batch; its loss and parts (detached, float64)."""
        graph, corruption = self.objective.model_input(batch)  # corrupted when denoising
        if self.potential.conservative:
            # autocast covers the forward only; the force derivative runs outside it
            out = energy_derivatives(lambda g: self._forward(g)["energy"], graph, create_graph=True)
        else:
            out = self._forward(graph)
        dtype = graph["pos"].dtype
        out = {k: v.to(dtype) for k, v in out.items()}  # the loss in full precision
        loss, parts = self.objective.loss(out, batch, num_structures, force_atoms, corruption)
        (loss * world).backward()  # DDP averages over processes: undo its 1/N
        return torch.cat((loss.detach().double().reshape(1), parts))

    def train_step(self, step: Sequence[int] | StepBatch) -> dict[str, float]:
        """One optimisation step on a global batch (indices, or this process's `StepBatch`):
        gradients, clipping, AdamW, LR schedule, EMA. Returns the losses, and the gradient
        norm before clipping."""
        c = self.config
        # decaying loss weights follow whichever budget (steps or time) is further spent
        self.objective.progress = self.budget.progress(self.step + 1, self.clock.last)
        row = self.compute_gradients(step)
        grad_norm = float("nan")
        if c.grad_clip:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip))
        self.optimizer.step()
        self.clock.tick(sync=self.budget.timed)  # the schedule reads it (rank 0's)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return {**row, "grad_norm": grad_norm}

    def process_seed(self) -> int:
        """This process's torch seed: the run's seed, distinct per rank."""
        return self.config.seed + 1_000_003 * self.dist.rank

    # -- evaluation ------------------------------------------------------------------------
    def release_distributed(self) -> None:
        """Drop the DistributedDataParallel wrapper (call before the process group is destroyed).

        A Trainer sits in reference cycles, so without this its DDP wrapper, which holds the
        gloo/NCCL group, can outlive ``destroy_process_group`` until a garbage collection
        during interpreter teardown, where gloo's destructor may abort the process.
        """
        self.ddp = None
        gc.collect()

    def evaluation_weights(self) -> contextlib.AbstractContextManager:
        """Context in which the model holds the weights to evaluate and save: the EMA
        weights when training keeps an EMA, else the trained ones."""
        return self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext()

    @torch.no_grad()
    def validate(self, data: Any, batch_structures: int = 8) -> dict[str, float]:
        """S2EF metrics in eV and eV/Å (EMA weights when training keeps an EMA), in full
        precision, on a dataset or list of structures, and stress metrics in eV/Å³ for a
        model with a stress head on stress-labelled structures. Distributed: each process
        evaluates every N-th structure; the metric sums are added up, so every process
        returns the metrics of the whole set."""
        with self.evaluation_weights():
            return self.validation.metrics(self.potential, data, batch_structures)

    evaluate = deprecated_alias(validate, "eqv2.train.Trainer.evaluate")

    # -- checkpoints -----------------------------------------------------------------------
    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save(self, path: Path | None = None) -> Path:
        """Write the weights and the full training state (rank 0 writes; all must call it)."""
        path = path or self.out_dir / CHECKPOINT_NAME
        rng_by_rank = all_gather_objects(self._rng_state())
        if not self.dist.is_main:
            return path
        state = TrainingState.capture(self, rng_by_rank)
        return save_model(self.potential, path, extra=state.to_extra())

    def resume(self, path: Path | None = None) -> None:
        """Restore weights and the full training state from a checkpoint written by `save`.

        Every process reads the same file. The data continue at the checkpoint's position in
        its epoch; the random streams (dropout) continue exactly when the number of processes
        is the one that wrote the checkpoint.
        """
        path = path or self.out_dir / CHECKPOINT_NAME
        state, weights = TrainingState.read(path)
        state.check_dataset(self, path)
        self.model.load_state_dict(weights)  # by name; copies cast to the model's dtype
        state.restore(self, path)

    # -- the loop --------------------------------------------------------------------------
    def finished(self) -> bool:
        """Whether a budget is spent (at the last step's clock reading) or early stopping
        ended the run."""
        return self.stopped_early or self.budget.exhausted(self.step, self.clock.last)

    def fit(self) -> dict[str, Any]:
        """Train until a budget is spent or early stopping ends the run; returns the last
        training losses and validation metrics."""
        c = self.config
        last: dict[str, Any] = {}
        if self.finished():
            return last
        log = None
        if self.dist.is_main:
            log = ScalarLog(self.out_dir, self.step, c.tensorboard, self._stress_columns())
        sampler = StepSampler(self.plan, self.dist.rank, self.epoch, self.batch_in_epoch)
        loader = make_loader(
            self.reader(self.train_set), sampler, self.loader_config, self.device,
            self.process_seed(),
        )  # fmt: skip
        batches = iterate(loader)
        self.clock.start()
        try:
            while not self.finished():
                start = time.perf_counter()
                step = next(batches)
                row: dict[str, Any] = {"lr": self.scheduler.get_last_lr()[0]}
                row.update(self.train_step(step))
                self.epoch, self.batch_in_epoch = step.epoch, step.position + 1
                self.step += 1
                rate = step.num_structures / (time.perf_counter() - start)
                row.update(step=self.step, epoch=self.epoch, structures_per_s=rate,
                           time=self.clock.last)  # fmt: skip
                done = self.finished()
                if self.val_set is not None and (self.step % c.eval_every == 0 or done):
                    metrics = self.validate(self.val_set)
                    row.update({f"val_{k}": v for k, v in metrics.items() if k != "n_structures"})
                    last["val"] = metrics
                    if self.best.update(row):
                        self._save_best()
                    self.stopped_early = self.best.should_stop
                    done = done or self.stopped_early
                if log is not None:
                    log.write(row)
                if self.on_step is not None:
                    self.on_step(row)
                if self.step % c.checkpoint_every == 0 or done:
                    self.save()
                    if log is not None:
                        log.flush()
                last["train"] = row
        finally:
            del batches, loader  # persistent workers stop with their last reference
            self.clock.stop()
            self.validation.close()
            if log is not None:
                log.close()
        return last

    def _stress_columns(self) -> tuple[str, ...]:
        """``log.csv`` columns for the stress and named-target loss parts and their
        validation metrics."""
        train = tuple(p for p in self.task.part_names() if p not in CSV_FIELDS)
        val = ("val_stress_mae", "val_stress_isotropic_mae", "val_stress_anisotropic_mae")
        has_val = self.val_set is not None and self.potential.has_stress_head
        named = tuple(f"val_{t}_mae" for t in self.task.target_names)
        return train + (val if has_val else ()) + (named if self.val_set is not None else ())

    def _save_best(self) -> None:
        if not self.dist.is_main:
            return
        with self.evaluation_weights():
            extra = {"step": self.step, "metric": self.best.metric}
            save_model(self.potential, self.out_dir / BEST_NAME, extra=extra)
