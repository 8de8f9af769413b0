"""`TrainerConfig`: the ``train`` section of a run config (optimisation and loss settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eqv2.train.denoising import DenoisingConfig
from eqv2.train.objective import LossSpec

__all__ = ["AMP_MODES", "TrainerConfig"]

#: Values of ``TrainerConfig.amp``: off, or bfloat16 autocast.
AMP_MODES = ("off", "bf16")


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
    """

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
    device: str = "auto"
    amp: str = "off"
    tensorboard: bool = True
    memory_saving: bool = False
    grad_accumulation: int = 1
    max_epochs: float | None = None
    warmup_epochs: float | None = None
    stress_isotropic_coefficient: float = 0.0
    stress_anisotropic_coefficient: float = 0.0
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
        if self.max_steps < 1:
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
