"""Denoising as an auxiliary training task: Noisy Nodes and DeNS, one loss term.

With probability ``prob`` a training batch is corrupted (`eqv2.train.corruption`): Gaussian
noise moves its atoms, the model sees the corrupted structure and predicts, for each corrupted
atom, the noise it received (in units of ``std``; an equivariant l=1 output). The other terms
keep the *clean* structure's targets:

* the energy (or property) loss is kept, against the clean structure's label, unless the
  energy head says ``use_denoising: false`` (fairchem's ``use_denoising_energy``); the stress
  terms likewise (``use_denoising_stress``, the DeNS stress head's ``use_denoising``);
* per atom, the force error of an uncorrupted atom counts with the force coefficient and the
  noise error of a corrupted atom with ``coefficient`` (fairchem's hybrid loss
  ``compute_atomwise_denoising_pos_and_force_hybrid_loss``), both as L2 norms averaged over
  the counted (free) atoms. Without ``corrupt_ratio`` every free atom is corrupted, so the
  force term of that batch vanishes and only the denoising term remains.

Which module predicts the noise is the model's business (`EquiformerV2.can_denoise`):

* **DeNS** (Liao et al. 2024; fairchem's ``EqV2DeNSBackbone``): the DeNS force head's
  ``denoising_pos_block``; the backbone encodes the corrupted atoms' force labels
  (``use_force_encoding``), so the task is well posed for non-equilibrium structures;
* **Noisy Nodes** (Godwin et al. 2022; the EquiformerV2 paper's IS2RE and QM9 runs,
  Appendix D.5 and F.1): any backbone with a ``denoising`` head (`eqv2.nn.heads.denoising`),
  one more equivariant graph-attention block read at l=1, as the paper adds "one additional
  block of equivariant graph attention for the auxiliary task".

The same term serves a property-only task (named targets, no forces: the property loss is
computed on the corrupted structure against the clean label, plus the denoising term) and
IS2RE direct. For IS2RE, ``kind: relaxed_interpolation`` is Equiformer's own Noisy Nodes rule
(`eqv2.train.corruption.RelaxedInterpolation`): atoms move towards their relaxed positions
plus noise, and the IS2RS displacement target, measured from the moved atoms, is the denoising
target. Per-atom displacement targets are always measured from the positions the model sees.

Validation and inference never corrupt anything.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from eqv2.train.corruption import Corruption, PositionNoise, RelaxedInterpolation

__all__ = ["NOISE_KINDS", "DenoisingConfig", "hybrid_force_denoising_loss"]


#: ``train.denoising.kind`` → how positions are corrupted
NOISE_KINDS: dict[str, type[PositionNoise] | type[RelaxedInterpolation]] = {
    "gaussian": PositionNoise,
    "relaxed_interpolation": RelaxedInterpolation,
}


@dataclass(frozen=True)
class DenoisingConfig:
    """The ``train.denoising`` section (fairchem's ``denoising_pos_params`` names).

    ``prob``: probability that a training batch is corrupted; ``coefficient``: weight of the
    denoising loss (fairchem's ``denoising_pos_coefficient``); ``kind`` picks the corruption:
    ``gaussian`` (`PositionNoise`: ``std``, ``fixed_std``, ``std_low``, ``std_high``,
    ``num_steps``, ``corrupt_ratio``, ``all_atoms``; the model predicts the noise) or
    ``relaxed_interpolation`` (`RelaxedInterpolation`: ``std``, ``structure_prob``,
    ``min_factor``; Equiformer's IS2RE Noisy Nodes, whose IS2RS displacement term is the
    denoising term, so it has no ``coefficient``). The defaults are fairchem's eqV2-DeNS MPtrj
    recipe (``configs/omat24/mptrj/eqV2_31M_dens_mptrj.yml``: prob 0.5, fixed std 0.1 Å,
    coefficient 10, every atom corrupted).
    """

    prob: float = 0.5
    coefficient: float = 10.0
    noise: PositionNoise | RelaxedInterpolation = PositionNoise()

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1:
            raise ValueError(f"denoising prob={self.prob}: must be in [0, 1].")
        if not self.coefficient >= 0:
            raise ValueError(f"denoising coefficient={self.coefficient}: must be >= 0.")

    @property
    def predicts_noise(self) -> bool:
        """Whether the model predicts the noise (a ``denoising_loss`` term and a head)."""
        return self.noise.predicts_noise

    @property
    def kind(self) -> str:
        return next(k for k, cls in NOISE_KINDS.items() if isinstance(self.noise, cls))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DenoisingConfig:
        """From a flat mapping (``{kind, prob, coefficient, std, corrupt_ratio, ...}``);
        unknown keys are errors naming the valid ones."""
        raw = dict(raw)
        kind = raw.pop("kind", "gaussian")
        if kind not in NOISE_KINDS:
            raise ValueError(f"train.denoising.kind={kind!r}: choose one of {list(NOISE_KINDS)}.")
        noise_cls = NOISE_KINDS[kind]
        own = {"prob", "coefficient"} if noise_cls.predicts_noise else {"prob"}
        noise_keys = {f.name for f in fields(noise_cls)}
        unknown = sorted(set(raw) - own - noise_keys)
        if unknown:
            hint = ""
            if "coefficient" in unknown and not noise_cls.predicts_noise:
                hint = (
                    " (with kind relaxed_interpolation the IS2RS displacement term is the "
                    "denoising term: weigh it with loss.<displacement target>.coefficient)"
                )
            raise ValueError(
                f"train.denoising: unknown key(s) {unknown} for kind {kind!r}; valid keys: "
                f"{sorted(own | noise_keys | {'kind'})}{hint}."
            )
        noise = noise_cls(**{k: v for k, v in raw.items() if k in noise_keys})
        return cls(**{k: v for k, v in raw.items() if k in own}, noise=noise)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping `from_dict` reads (``kind`` only when not ``gaussian``, so a DeNS
        recipe keeps fairchem's keys)."""
        noise = {f.name: getattr(self.noise, f.name) for f in fields(self.noise)}
        if not self.predicts_noise:
            return {"kind": self.kind, "prob": self.prob, **noise}
        return {"prob": self.prob, "coefficient": self.coefficient, **noise}

    def maybe_corrupt(
        self,
        graph: dict[str, torch.Tensor],
        forces: torch.Tensor | None,
        cutoff: float,
        displacement: torch.Tensor | None = None,
    ) -> Corruption | None:
        """A corruption of the batch with probability ``prob`` (torch's global generator, so
        resumed runs repeat the draws), else None. ``forces``: the force labels (None for a
        task without them); ``displacement``: the batch's ``pos_relaxed − pos`` (N, 3), which
        ``relaxed_interpolation`` needs."""
        if self.prob <= 0 or float(torch.rand(())) >= self.prob:
            return None
        return self.noise.corrupt(graph, forces, cutoff, displacement)


def hybrid_force_denoising_loss(
    forces_pred: torch.Tensor | None,
    forces_target: torch.Tensor | None,
    noise_pred: torch.Tensor,
    corruption: Corruption,
    counted: torch.Tensor,
    denominator: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Force L2MAE over counted atoms left clean and noise L2MAE over counted corrupted atoms.

    Both sums are divided by the same count (``denominator``, else the number of counted
    atoms), so ``λ_F · force + λ_D · denoise`` is fairchem's hybrid per-atom mean. Without
    force labels (``forces_pred`` None) the force part is 0.

    Args:
        counted: ``(N,)`` bool, the atoms in the loss (free atoms, or all; corrupted fixed
            atoms with ``all_atoms`` are counted as well).
    """
    mask = corruption.mask
    counted = counted | mask
    if denominator is None:
        denominator = float(counted.sum())
    noise_err = (noise_pred - corruption.target.to(noise_pred.dtype)).norm(dim=1)
    scale = 1.0 / denominator if denominator else 0.0
    denoise = (noise_err * (counted & mask)).sum() * scale
    if forces_pred is None:
        return noise_pred.sum() * 0.0, denoise
    force_err = (forces_pred - forces_target).norm(dim=1)
    force = (force_err * (counted & ~mask)).sum() * scale
    return force, denoise
