"""The training state a ``checkpoint.pt`` carries, and its schema, in one place.

A training-state checkpoint is an eqv2 model checkpoint (`eqv2.model.loading.save_model`)
whose ``extra[TRAINING_STATE_KEY]`` holds a `TrainingState`: counters, optimiser, scheduler,
EMA, the random streams of every process, the number of processes and structures it was
written with, and the trainer's config. `TrainingState.capture` reads it off a trainer and
`TrainingState.restore` puts it back, so that ``resume`` continues exactly as an uninterrupted
run would.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, fields
from math import inf
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from eqv2.model.checkpoint import TRAINING_STATE_KEY, load_checkpoint

if TYPE_CHECKING:
    from eqv2.train.trainer import Trainer

__all__ = ["TRAINING_STATE_KEY", "TrainingState"]

# TRAINING_STATE_KEY (re-exported) is the checkpoint format's: eqv2.model.checkpoint owns it


@dataclass
class TrainingState:
    """Everything beyond the weights that ``resume`` needs (plain types and tensors only)."""

    step: int
    epoch: int
    batch_in_epoch: int
    best_force_mae: float
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    ema: dict[str, Any] | None
    rng: torch.Tensor
    rng_by_rank: list[dict[str, torch.Tensor]] | None = None
    world_size: int = 1
    num_structures: int | None = None
    trainer_config: dict[str, Any] | None = None
    #: seconds of training on the run's clock when written (the time budget used so far)
    elapsed_time: float = 0.0
    #: the clock's reading at the last step (the schedule and stop decision use it)
    clock_reading: float = 0.0
    #: the best validation value so far and evaluations since (`BestTracker.state_dict`)
    best: dict[str, Any] | None = None

    @classmethod
    def capture(cls, trainer: Trainer, rng_by_rank: list[dict[str, torch.Tensor]]) -> TrainingState:
        """The state of ``trainer`` now; ``rng_by_rank``: every process's random streams."""
        return cls(
            step=trainer.step,
            epoch=trainer.epoch,
            batch_in_epoch=trainer.batch_in_epoch,
            # kept for older readers: the tracked best when it is the force MAE
            best_force_mae=trainer.best.best if trainer.best.metric == "val_force_mae" else inf,
            optimizer=trainer.optimizer.state_dict(),
            scheduler=trainer.scheduler.state_dict(),
            ema=trainer.ema.state_dict() if trainer.ema is not None else None,
            rng=torch.get_rng_state(),
            rng_by_rank=rng_by_rank,
            world_size=trainer.dist.world_size,
            num_structures=len(trainer.train_set),
            trainer_config=dataclasses.asdict(trainer.config),
            elapsed_time=trainer.clock.elapsed(),
            clock_reading=trainer.clock.last,
            best=trainer.best.state_dict(),
        )

    def to_extra(self) -> dict[str, Any]:
        """The checkpoint ``extra`` entry holding this state."""
        return {TRAINING_STATE_KEY: {f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def read(cls, path: Path) -> tuple[TrainingState, dict[str, torch.Tensor]]:
        """The training state and the weights of a checkpoint written by ``Trainer.save``.

        Raises:
            ValueError: the file holds no training state.
        """
        ckpt = load_checkpoint(path)
        state = ckpt["extra"].get(TRAINING_STATE_KEY)
        if state is None:
            raise ValueError(f"{path} holds no training state (not written by Trainer.save).")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known}), ckpt["state_dict"]

    def check_dataset(self, trainer: Trainer, path: Path) -> None:
        """Refuse to resume ``trainer`` on a training set of another size than the state's.

        Raises:
            ValueError: naming ``path`` and both sizes.
        """
        written_for = self.num_structures
        if written_for is not None and int(written_for) != len(trainer.train_set):
            raise ValueError(
                f"{path} was written while training on {written_for} structures, but the "
                f"training set now has {len(trainer.train_set)}: resuming would not continue the "
                "same epoch. Resume with the original data.train, or start a new run (--init)."
            )

    def restore(self, trainer: Trainer, path: Path) -> None:
        """Put this state into ``trainer`` (weights excepted); ``path`` names it in messages."""
        trainer.optimizer.load_state_dict(self.optimizer)
        trainer.scheduler.load_state_dict(self.scheduler)
        if trainer.ema is not None and self.ema is not None:
            trainer.ema.load_state_dict(self.ema)
        self._restore_rng(trainer)
        trainer.step, trainer.epoch = int(self.step), int(self.epoch)
        trainer.batch_in_epoch = int(self.batch_in_epoch)
        old = {"metric": "val_force_mae", "best": self.best_force_mae, "since_best": 0}
        trainer.best.load_state_dict(self.best or old)  # checkpoints before `best` existed
        trainer.stopped_early = trainer.best.should_stop
        trainer.clock.restore(float(self.clock_reading), float(self.elapsed_time))
        written_by, world = int(self.world_size), trainer.dist.world_size
        if written_by != world:
            # the global batches are the same unless a batch was widened to give every process
            # a structure; then the epoch restarts with the new cut
            plan, done = trainer.plan, trainer.batch_in_epoch
            before = plan.global_batches(trainer.epoch, written_by)[:done]
            if before != plan.global_batches(trainer.epoch)[:done]:
                trainer.batch_in_epoch = 0
                warnings.warn(
                    f"{path} was written by {written_by} process(es) and is resumed with "
                    f"{world}, which cut the epoch's batches differently: epoch "
                    f"{trainer.epoch} restarts at step {trainer.step}.",
                    stacklevel=3,
                )

    def _restore_rng(self, trainer: Trainer) -> None:
        by_rank = self.rng_by_rank
        if by_rank is not None and len(by_rank) == trainer.dist.world_size:
            mine = by_rank[trainer.dist.rank]
            torch.set_rng_state(mine["cpu"])
            if "cuda" in mine and trainer.device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], trainer.device)
        else:
            torch.set_rng_state(self.rng)
            if trainer.dist.world_size > 1:
                torch.manual_seed(trainer.process_seed() + trainer.step)
