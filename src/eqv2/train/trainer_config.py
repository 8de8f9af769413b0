"""`TrainerConfig`: the ``train`` section of a run config (optimisation and loss settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eqv2.train.budget import CLOCKS, parse_duration
from eqv2.train.denoising import DenoisingConfig
from eqv2.train.early_stopping import EarlyStopping
from eqv2.train.objective import LossSpec

__all__ = ["AMP_MODES", "FinalScoring", "SCORED_SPLITS", "TrainerConfig"]

#: Values of ``TrainerConfig.amp``: off, or bfloat16 autocast.
AMP_MODES = ("off", "bf16")
#: Splits the final scoring may evaluate.
SCORED_SPLITS = ("train", "val", "test")


@dataclass
class FinalScoring:
    """``train.final_scoring``: which splits are scored with the final weights after training
    (those given to the run), and at most how many structures of each (a seeded subsample;
    null: all of ``val`` and ``test``, and ``data.train_eval_structures`` of ``train``).
    ``final_scoring: false`` (or ``splits: []``) scores nothing: the run ends with
    ``final.pt``, an empty ``metrics.json`` and the learning curves."""

    splits: list[str] = field(default_factory=lambda: list(SCORED_SPLITS))
    max_structures: int | None = None

    def __post_init__(self) -> None:
        self.splits = [self.splits] if isinstance(self.splits, str) else list(self.splits or [])
        bad = [s for s in self.splits if s not in SCORED_SPLITS]
        if bad:
            raise ValueError(f"final_scoring.splits: {bad} unknown; choose from {SCORED_SPLITS}.")
        if self.max_structures is not None and int(self.max_structures) < 1:
            raise ValueError(
                f"final_scoring.max_structures={self.max_structures}: must be at least 1 "
                "(leave a split out of final_scoring.splits to skip it)."
            )

    @classmethod
    def of(cls, value: FinalScoring | dict[str, Any] | bool | None) -> FinalScoring:
        """From a config value: a mapping, an instance, true/null (defaults) or false (off)."""
        if isinstance(value, cls):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(splits=[])
        if not isinstance(value, dict) or set(value) - {"splits", "max_structures"}:
            raise ValueError(
                f"final_scoring={value!r}: expected {{splits: [val, test], max_structures: N}} "
                "(keys splits, max_structures), true or false."
            )
        return cls(**value)


@dataclass
class TrainerConfig:
    """Optimisation settings (names follow the paper's recipe).

    ``max_atoms_per_batch`` and ``max_structures_per_batch`` bound the global batch, whatever
    the number of processes N: each process trains on about 1/N of it, so a config trains the
    same way on one process and on N (N processes with B atoms each equal one process with
    N·B), and the presets keep the paper's batch sizes. A global batch holds at least N
    structures.
    ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:K``; under torchrun
    each process uses ``cuda:LOCAL_RANK``. ``amp``: ``off`` or ``bf16`` (bfloat16 autocast;
    float16 is refused, it would need loss scaling). ``tensorboard``: also write TensorBoard
    events next to ``log.csv``. ``memory_saving``: the grid MLP recomputes its grid tensors in
    backward instead of storing them (31M config on CPU: −21 % peak memory, 9.2 → 7.2 GB, for
    a 9-18 % slower forward+backward; not under bf16 autocast). ``grad_accumulation``: each
    process's share of a global batch runs as this many micro-batches (split by atoms) before
    one optimiser step; the global batch, and so the result, stay the same.

    Loss terms (`eqv2.train.objective.LossSpec`): ``energy_loss`` (mae, per_atom_mae, mse)
    with ``energy_coefficient``, the force L2MAE with ``force_coefficient``, and for a model
    with a decomposed stress head the stress-part MAEs with ``stress_isotropic_coefficient``
    and ``stress_anisotropic_coefficient`` (0: off; on, every training structure needs a
    stress label). ``denoising``: the Noisy Nodes / DeNS auxiliary task
    (`eqv2.train.denoising.DenoisingConfig` keys: prob, coefficient, std, fixed_std, std_low,
    std_high, num_steps, corrupt_ratio, all_atoms); None: off.

    Step or epoch schedule: ``max_epochs`` (when set) replaces ``max_steps``, and
    ``warmup_epochs`` replaces ``warmup_steps``, converted with the number of global batches
    of epoch 0 (later epochs, cut by atom budget from other orders, may differ by a batch or
    two; training stops after the converted number of steps).

    Time budget (`eqv2.train.budget`): ``max_time`` (seconds, or ``30m``, ``1.5h``) on the
    ``max_time_clock`` (``wall``, or ``process``: CPU time of the training process); the run
    stops after the step that spends it, with the cosine schedule completed. With a step (or
    epoch) budget too, whichever ends first ends the run and the schedule; ``max_steps: null``
    leaves the time budget alone. ``warmup_time`` (a duration) is a warm-up measured on the
    same clock; with ``warmup_steps`` too, the first to end ends the warm-up.
    ``early_stopping`` (`eqv2.train.early_stopping.EarlyStopping`): stop when a validation
    metric stops improving; ``best.pt`` keeps the best checkpoint of that metric.
    ``final_scoring`` (`FinalScoring`): which splits the workflow scores after training, and
    how many structures of each.
    """

    max_steps: int | None = 1000
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
    device: str = "auto"
    amp: str = "off"
    tensorboard: bool = True
    memory_saving: bool = False
    grad_accumulation: int = 1
    max_epochs: float | None = None
    warmup_epochs: float | None = None
    stress_isotropic_coefficient: float = 0.0
    stress_anisotropic_coefficient: float = 0.0
    max_time: float | str | None = None
    max_time_clock: str = "wall"
    warmup_time: float | str | None = None
    early_stopping: EarlyStopping | dict[str, Any] | None = None
    final_scoring: FinalScoring | dict[str, Any] | bool | None = None
    #: the denoising auxiliary task (Noisy Nodes / DeNS): `DenoisingConfig` keys, or None
    denoising: dict[str, Any] | None = None

    def loss_spec(self) -> LossSpec:
        """The loss terms and coefficients of this config."""
        return LossSpec(
            self.energy_coefficient, self.force_coefficient, self.energy_loss,
            self.free_atoms_only, self.stress_isotropic_coefficient,
            self.stress_anisotropic_coefficient,
            None if self.denoising is None else DenoisingConfig.from_dict(self.denoising),
        )  # fmt: skip

    def __post_init__(self) -> None:
        self.loss_spec()  # validates the loss keys
        self.max_time = parse_duration(self.max_time, "max_time")
        self.warmup_time = parse_duration(self.warmup_time, "warmup_time")
        if self.max_time_clock not in CLOCKS:
            raise ValueError(
                f"max_time_clock={self.max_time_clock!r}: choose one of {tuple(CLOCKS)}."
            )
        if self.max_time and self.warmup_time and self.warmup_time >= self.max_time:
            raise ValueError(
                f"warmup_time={self.warmup_time} s is not shorter than max_time={self.max_time} s."
            )
        self.early_stopping = EarlyStopping.of(self.early_stopping)
        self.final_scoring = FinalScoring.of(self.final_scoring)
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            raise ValueError(
                "max_steps=null with no max_epochs or max_time: the run would never end; set "
                "one of them."
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}: must be at least 1.")
        if self.grad_accumulation < 1:
            raise ValueError(f"grad_accumulation={self.grad_accumulation}: must be at least 1.")
        for name in ("max_epochs", "warmup_epochs"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name}={value}: must be a non-negative number of epochs.")
        if self.max_epochs is not None and self.max_epochs <= 0:
            raise ValueError(f"max_epochs={self.max_epochs}: must be positive.")
        if self.lr <= 0:
            raise ValueError(f"lr={self.lr}: must be positive.")
        # YAML reads a bare `off`/`no` as False
        amp = "off" if self.amp in (None, False) else str(self.amp).lower()
        amp = {"none": "off", "bfloat16": "bf16"}.get(amp, amp)
        if amp in ("fp16", "float16", "16"):
            raise ValueError(
                f"amp={self.amp!r}: float16 needs loss scaling (a GradScaler), which eqv2 does "
                "not implement; use amp: bf16 (same speed-up on recent GPUs and CPUs, no scaler)."
            )
        if amp not in AMP_MODES:
            raise ValueError(f"amp={self.amp!r}: choose one of {AMP_MODES}.")
        self.amp = amp
