"""What a run trains: its outputs and loss terms, declared in the config (`TaskSpec`).

A run config may declare, in the spirit of fairchem 1.x's ``outputs`` and ``loss_functions``:

```yaml
outputs:                # what the model predicts
  energy: {}            # S2EF outputs: labels read with data.energy_key / forces_key
  forces: {}
  gap: {key: gap, extensive: false, unit: eV}   # a named per-structure scalar target
loss:                   # one term per output (mapping, or fairchem's list of one-key maps)
  energy: {fn: mae, coefficient: 1}
  forces: {fn: l2mae, coefficient: 100}
  gap: {fn: mae, coefficient: 1}
```

A named target (`TargetSpec`) is read from each record under ``key`` (default: its name), times
``scale`` (a unit conversion: stored value × scale = value in ``unit``), gets its own
normaliser fitted on the training split and its own property head, reduced over atoms by a sum
(``extensive: true``) or a mean (``extensive: false``, the default). A target of
``kind: displacement`` is per atom: the minimum-image displacement from each atom's position
to the positions stored under ``key`` (default ``pos_relaxed``: the IS2RS auxiliary task),
predicted by an equivariant vector head and trained on free atoms only. A loss term's
``final_coefficient`` makes its weight decay linearly from ``coefficient`` at the first step
to ``final_coefficient`` at the last (Equiformer's IS2RS auxiliary weight, 15 → 1).

``data.target: gap`` (or ``gap,homo``) is the shortcut that trains just those targets: their
declarations are kept where the config has them, and energy and forces are dropped, so no
force label is read.

Configs without these sections keep working: `eqv2.train.task_config.parse_task` translates
the ``train`` section's loss keys (``energy_coefficient``, ``force_coefficient``,
``energy_loss``, ``stress_*_coefficient``) into the same form, in this one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eqv2.model.heads import DEFAULT_HEADS, RESERVED_OUTPUTS, property_head_spec
from eqv2.train.denoising import DenoisingConfig
from eqv2.train.early_stopping import VALIDATION_METRICS
from eqv2.train.losses import ENERGY_LOSSES, PROPERTY_LOSSES

__all__ = [
    "DISPLACEMENT_LOSSES",
    "LEGACY_LOSS_KEYS",
    "S2EF_LOSSES",
    "TARGET_KINDS",
    "LossSpec",
    "LossTerm",
    "TargetSpec",
    "TaskSpec",
]

#: ``train`` keys that the ``loss`` section replaces (old configs keep using them).
LEGACY_LOSS_KEYS = (
    "energy_coefficient",
    "force_coefficient",
    "energy_loss",
    "stress_isotropic_coefficient",
    "stress_anisotropic_coefficient",
)
#: Kinds of named targets: a per-structure scalar, or a per-atom displacement to stored positions.
TARGET_KINDS = ("scalar", "displacement")
#: Loss functions of a displacement target (per component, or per atom |Δ|₂).
DISPLACEMENT_LOSSES = ("mae", "l2mae")
#: Loss functions of the S2EF outputs.
S2EF_LOSSES = {
    "energy": ENERGY_LOSSES,
    "forces": ("l2mae",),
    "stress_isotropic": ("mae",),
    "stress_anisotropic": ("mae",),
}


@dataclass(frozen=True)
class LossSpec:
    """The S2EF loss terms and coefficients (energy, forces, stress parts).

    A stress coefficient above 0 turns the stress loss on: every training structure then
    needs a stress label.
    """

    energy_coefficient: float = 1.0
    force_coefficient: float = 1.0
    energy_loss: str = "mae"
    free_atoms_only: bool = True
    stress_isotropic_coefficient: float = 0.0
    stress_anisotropic_coefficient: float = 0.0
    #: the denoising auxiliary task (Noisy Nodes / DeNS), or None
    denoising: DenoisingConfig | None = None

    def __post_init__(self) -> None:
        if self.energy_loss not in ENERGY_LOSSES:
            raise ValueError(f"energy_loss={self.energy_loss!r}: choose one of {ENERGY_LOSSES}.")
        for name in ("stress_isotropic_coefficient", "stress_anisotropic_coefficient"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be 0 (off) or positive.")

    @property
    def stress(self) -> bool:
        """Whether the stress loss is on."""
        return self.stress_isotropic_coefficient > 0 or self.stress_anisotropic_coefficient > 0

    def part_names(self) -> tuple[str, ...]:
        """Names of the logged loss parts, in the order `Objective.loss` returns them."""
        parts = ("energy_loss", "force_loss")
        parts += ("stress_isotropic_loss", "stress_anisotropic_loss") if self.stress else ()
        return parts + (("denoising_loss",) if self.denoising is not None else ())


@dataclass(frozen=True)
class TargetSpec:
    """A named per-structure scalar target.

    Attributes:
        name: the output's name (its property head's and normaliser's name).
        key: where records store it (``targets``/``info`` key, or ``energy``); default ``name``.
        extensive: readout: sum over atoms (True) or mean over atoms (False).
        unit: the unit the model predicts it in (after ``scale``), for reports and checkpoints.
        scale: multiplies the stored value (a unit conversion, e.g. 1000 for eV → meV).
        kind: ``scalar`` (per structure) or ``displacement`` (per atom, to the positions
            stored under ``key``, default ``pos_relaxed``).
    """

    name: str
    key: str | None = None
    extensive: bool = False
    unit: str | None = None
    scale: float = 1.0
    kind: str = "scalar"

    def __post_init__(self) -> None:
        if self.name in RESERVED_OUTPUTS:
            raise ValueError(
                f"outputs.{self.name}: a named target may not take the name of a fixed output "
                f"{RESERVED_OUTPUTS}; call it e.g. 'total_energy' with key: {self.name}."
            )
        if not isinstance(self.extensive, bool):
            raise ValueError(f"outputs.{self.name}.extensive={self.extensive!r}: true or false.")
        if not float(self.scale) != 0.0:
            raise ValueError(f"outputs.{self.name}.scale={self.scale}: must be non-zero.")
        if self.kind not in TARGET_KINDS:
            raise ValueError(
                f"outputs.{self.name}.kind={self.kind!r}: choose one of {TARGET_KINDS}."
            )

    @property
    def per_atom(self) -> bool:
        """Whether the target is a per-atom vector (a displacement)."""
        return self.kind == "displacement"

    @property
    def read_key(self) -> str:
        """The key records store the target under."""
        return self.key or ("pos_relaxed" if self.per_atom else self.name)

    def head_spec(self) -> dict[str, Any]:
        """The model's ``heads`` entry for this target."""
        return property_head_spec(self.extensive, self.unit, per_atom_vector=self.per_atom)


@dataclass(frozen=True)
class LossTerm:
    """One loss term on a named target: ``coefficient · fn(normalised pred, target)``; with
    ``final_coefficient`` the weight goes linearly from ``coefficient`` (first step) to it
    (last step)."""

    target: str
    fn: str = "mae"
    coefficient: float = 1.0
    final_coefficient: float | None = None

    def __post_init__(self) -> None:
        if self.fn not in (*PROPERTY_LOSSES, *DISPLACEMENT_LOSSES):
            raise ValueError(f"loss.{self.target}.fn={self.fn!r}: choose one of {PROPERTY_LOSSES}.")
        for name in ("coefficient", "final_coefficient"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"loss.{self.target}.{name}={value}: must be >= 0.")

    def coefficient_at(self, progress: float) -> float:
        """The weight at ``progress`` (the fraction of training steps done, 0 to 1)."""
        if self.final_coefficient is None:
            return float(self.coefficient)
        fraction = min(max(progress, 0.0), 1.0)
        return float(self.coefficient + (self.final_coefficient - self.coefficient) * fraction)


@dataclass(frozen=True)
class TaskSpec:
    """A run's outputs and losses: the S2EF part (None: no energy and forces are trained or
    read), the named targets with their loss terms (in declaration order), and the denoising
    auxiliary task (Noisy Nodes / DeNS, for S2EF and property tasks alike; a `LossSpec`'s
    ``denoising`` is taken over when this one is None)."""

    s2ef: LossSpec | None = field(default_factory=LossSpec)
    targets: tuple[TargetSpec, ...] = ()
    losses: tuple[LossTerm, ...] = ()
    denoising: DenoisingConfig | None = None

    def __post_init__(self) -> None:
        if self.s2ef is None and not self.targets:
            raise ValueError("the run trains nothing: declare energy/forces or a named target.")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"outputs: a target is declared twice ({names}).")
        if sorted(term.target for term in self.losses) != sorted(names):
            raise ValueError(f"loss terms {self.losses} do not match the targets {names}.")
        own = self.s2ef.denoising if self.s2ef is not None else None
        if own is not None and self.denoising not in (None, own):
            raise ValueError("train.denoising is given twice, differently (LossSpec, TaskSpec).")
        if self.denoising is None and own is not None:
            object.__setattr__(self, "denoising", own)
        if self.denoising is not None and not self.denoising.predicts_noise:
            self._check_relaxed_interpolation()

    def _check_relaxed_interpolation(self) -> None:
        if self.s2ef is not None or not any(t.per_atom for t in self.targets):
            raise ValueError(
                f"train.denoising.kind={self.denoising.kind!r} is IS2RE's Noisy Nodes: it "
                "moves atoms towards their relaxed positions, so the task needs a displacement "
                "target (outputs: {relaxed_displacement: {kind: displacement, key: "
                "pos_relaxed}}) and no energy/forces outputs, whose labels belong to the "
                "unmoved structure (configs/is2re_direct.yaml). For S2EF or a property task "
                "use kind: gaussian."
            )

    @property
    def stress(self) -> bool:
        """Whether the stress loss is on."""
        return self.s2ef is not None and self.s2ef.stress

    @property
    def free_atoms_only(self) -> bool:
        return self.s2ef is None or self.s2ef.free_atoms_only

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    def validation_metrics(self) -> tuple[str, ...]:
        """``log.csv`` validation columns an early-stopping rule may follow for this task."""
        named = tuple(f"val_{n}_mae" for n in self.target_names)
        return (VALIDATION_METRICS if self.s2ef is not None else ()) + named

    def part_names(self) -> tuple[str, ...]:
        """Names of the logged loss parts, in the order `Objective.loss` returns them."""
        s2ef = self.s2ef.part_names() if self.s2ef is not None else ()
        s2ef = tuple(p for p in s2ef if p != "denoising_loss")
        if self.denoising is not None and self.denoising.predicts_noise:
            s2ef += ("denoising_loss",)
        return s2ef + tuple(f"{term.target}_loss" for term in self.losses)

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets if not t.per_atom)

    def best_metric(self) -> str:
        """The validation metric that picks ``best.pt``: the force MAE, else the first
        per-structure target's MAE (else the first target's)."""
        if self.s2ef is not None:
            return "force_mae"
        return f"{(self.scalar_names or self.target_names)[0]}_mae"

    def model_heads(
        self, heads: Mapping[str, Any] | None, direct_forces: bool = False
    ) -> dict[str, Any] | None:
        """The model's ``heads`` for this task: ``heads`` (the model config's; None: the
        default S2EF heads for ``direct_forces``) plus a property head per target it lacks;
        without S2EF outputs only the property heads. ``heads`` as given when there are no
        targets."""
        if not self.targets:
            return None if heads is None else dict(heads)
        out: dict[str, Any] = {}
        if self.s2ef is not None:
            out = dict(heads) if heads is not None else _default_heads(direct_forces)
        elif heads:  # a property-only model: keep only property heads (and a noise predictor)
            keep = set(self.target_names)
            if self.denoising is not None and self.denoising.predicts_noise:
                keep.add("denoising")
            out = {k: v for k, v in heads.items() if k in keep}
        for t in self.targets:
            out.setdefault(t.name, t.head_spec())
        return out


def _default_heads(direct_forces: bool) -> dict[str, Any]:
    return {k: dict(v) for k, v in DEFAULT_HEADS.items() if k == "energy" or direct_forces}
