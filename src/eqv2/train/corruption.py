"""Corruption of atomic positions, shared by Noisy Nodes and DeNS training.

Two kinds: `PositionNoise` (Gaussian noise, DeNS and Noisy Nodes) and `RelaxedInterpolation`
(Equiformer's IS2RE Noisy Nodes: towards the relaxed positions, plus noise; its docstring
gives its rules). The rest of this docstring is `PositionNoise`'s.

`PositionNoise.corrupt` takes a batch graph (`eqv2.graph.batch_structures`) and returns a
`Corruption`: the graph with moved atoms, the noise added and which atoms carry it. The rules
follow fairchem 1.10's DeNS trainer (``add_gaussian_noise_to_position`` and
``add_gaussian_noise_schedule_to_position`` in ``models/equiformer_v2/trainers/dens_trainer.py``):

* every xyz component of an atom's displacement is drawn from N(0, σ²); σ is ``std``
  (``fixed_std``), or one σ per structure drawn uniformly from ``num_steps`` values spaced
  geometrically between ``std_low`` and ``std_high``;
* with ``corrupt_ratio`` r, each atom is corrupted with probability r (the others keep their
  position and are trained on their ordinary targets); without it, all atoms are;
* fixed atoms are never moved unless ``all_atoms``; eqv2 also leaves them out of the
  corrupted set (fairchem draws noise for them but never applies it, and its loss masks them);
* the denoising target is the noise divided by ``target_scale``: ``std``, or ``std_high`` for
  sampled σ (fairchem's ``denoising_pos_target`` normaliser).

Edges: fairchem rebuilds the radius graph of the corrupted structure. eqv2 keeps the clean
structure's edges, recomputes their vectors from the moved positions (exactly, with the
periodic image shifts), and drops those now longer than the cutoff; pairs that the noise brings
inside the cutoff are not added. With σ = 0.1 Å this touches only pairs within a few tenths
of an Å of the cutoff, where the EquiformerV2 radial basis is small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from eqv2.graph.edges import edge_vectors

__all__ = ["Corruption", "PositionNoise", "RelaxedInterpolation"]

#: graph keys with one row per edge (filtered together when edges are dropped)
_EDGE_KEYS = ("cell_offsets", "edge_vec", "edge_rot")


@dataclass(frozen=True)
class Corruption:
    """One corrupted batch.

    Attributes:
        graph: the batch graph with moved ``pos`` and recomputed ``edge_vec``, plus (from
            `PositionNoise`) ``denoising_mask (N,) bool`` (the corrupted atoms: the model
            then also predicts the noise), ``denoising_forces (N, 3)`` (the force labels of
            the corrupted atoms, zeros elsewhere: DeNS's force encoding input) and
            ``denoising_sigmas (N, 1)``.
        noise: ``(N, 3)`` displacement added to each atom (zero for atoms not corrupted).
        mask: ``(N,)`` bool, the corrupted atoms.
        target_scale: the noise is predicted in units of this length (Å).
    """

    graph: dict[str, torch.Tensor]
    noise: torch.Tensor
    mask: torch.Tensor
    target_scale: float

    @property
    def target(self) -> torch.Tensor:
        """The normalised denoising target ``noise / target_scale`` (N, 3)."""
        return self.noise / self.target_scale


@dataclass(frozen=True)
class PositionNoise:
    """How positions are corrupted (the module docstring gives the rules).

    Args:
        std: σ in Å when ``fixed_std``.
        fixed_std: one σ for every structure (``std``) or a σ drawn per structure.
        std_low, std_high, num_steps: the σ values to draw from when not ``fixed_std``.
        corrupt_ratio: fraction of atoms corrupted (None: all of them).
        all_atoms: also corrupt fixed atoms.
    """

    std: float | None = 0.1
    fixed_std: bool = True
    std_low: float | None = None
    std_high: float | None = None
    num_steps: int | None = None
    corrupt_ratio: float | None = None
    all_atoms: bool = False

    def __post_init__(self) -> None:
        if self.fixed_std:
            if self.std is None or not self.std > 0:
                raise ValueError(f"std={self.std}: fixed_std needs a positive noise std (Å).")
        else:
            low, high, steps = self.std_low, self.std_high, self.num_steps
            if low is None or high is None or steps is None or not 0 < low <= high or steps < 1:
                raise ValueError(
                    f"std_low={low}, std_high={high}, num_steps={steps}: fixed_std=false draws σ "
                    "from num_steps >= 1 values between 0 < std_low <= std_high (Å); set all three."
                )
        if self.corrupt_ratio is not None and not 0 < self.corrupt_ratio <= 1:
            raise ValueError(
                f"corrupt_ratio={self.corrupt_ratio}: must be in (0, 1], or null to corrupt "
                "every atom."
            )

    @property
    def target_scale(self) -> float:
        """The length the predicted noise is measured in: ``std`` or ``std_high``."""
        return float(self.std if self.fixed_std else self.std_high)

    def sigmas(self, num_structures: int, device: torch.device) -> torch.Tensor:
        """σ per structure (B,), float64."""
        if self.fixed_std:
            return torch.full(
                (num_structures,), float(self.std), dtype=torch.float64, device=device
            )
        steps = torch.linspace(
            math.log(self.std_low),
            math.log(self.std_high),
            int(self.num_steps),
            dtype=torch.float64,
        ).exp()
        choice = torch.randint(0, int(self.num_steps), (num_structures,))
        return steps[choice].to(device)

    #: the model predicts the noise (a denoising head): a denoising loss term
    predicts_noise = True

    def corrupt(
        self,
        graph: dict[str, torch.Tensor],
        forces: torch.Tensor | None,
        cutoff: float,
        displacement: torch.Tensor | None = None,
    ) -> Corruption:
        """Corrupt a batch (random numbers from torch's global generator, so a resumed run
        draws the same noise).

        Args:
            graph: a `batch_structures` graph (``pos``, ``cell``, ``batch``, ``natoms``,
                ``edge_index``, ``cell_offsets``, ``fixed``).
            forces: ``(N, 3)`` force labels in eV/Å (for the force encoding), or None when the
                task has none (zeros are encoded).
            cutoff: the model's radius (Å): edges stretched beyond it are dropped.
            displacement: unused (the `RelaxedInterpolation` signature).
        """
        pos = graph["pos"]
        n, device = pos.shape[0], pos.device
        sigma = self.sigmas(int(graph["natoms"].shape[0]), device)[graph["batch"]]  # (N,)
        noise = torch.randn(n, 3, dtype=torch.float64, device=device) * sigma[:, None]
        mask = torch.ones(n, dtype=torch.bool, device=device)
        if self.corrupt_ratio is not None:
            mask = torch.rand(n, dtype=torch.float64, device=device) < self.corrupt_ratio
        if not self.all_atoms:
            mask = mask & ~graph["fixed"].bool()
        noise = (noise * mask[:, None]).to(pos.dtype)
        moved = _moved_graph(graph, noise, cutoff)
        moved["denoising_mask"] = mask  # the model then also predicts the noise
        labels = torch.zeros_like(pos) if forces is None else forces.to(pos.dtype)
        moved["denoising_forces"] = labels * mask[:, None]
        moved["denoising_sigmas"] = sigma.to(pos.dtype)[:, None]  # per structure, as fairchem
        return Corruption(moved, noise, mask, self.target_scale)


@dataclass(frozen=True)
class RelaxedInterpolation:
    """Noisy Nodes as Equiformer and EquiformerV2 train IS2RE: move atoms towards their relaxed
    positions and add Gaussian noise.

    The rule is ``interpolate_init_relaxed_pos`` of the official research code
    (atomicarchitects/equiformer ``oc20/trainer/base_trainer_v2.py``, commit 64cb786, enabled by
    ``use_interpolate_init_relaxed_pos`` in its IS2RE configs; atomicarchitects/equiformer_v2
    carries the same function, cf45ee2): each structure is picked with probability
    ``structure_prob`` (0.5 there); each free atom of a picked structure moves to
    ``λ·pos + (1 − λ)·pos_relaxed + ε`` with ``λ ~ U(min_factor, 1)`` drawn per atom (0 there)
    and ``ε ~ N(0, std²)`` per component (0.3 Å there). Fixed atoms never move. The model sees
    the moved structure; the relaxed energy stays the target, and the IS2RS displacement target
    becomes ``pos_relaxed − moved`` (the official trainer moves ``batch.pos`` in place before
    computing ``pos_relaxed − pos``): the auxiliary head itself denoises, no extra head.

    ``Corruption.noise`` is the whole move (interpolation plus noise), ``mask`` the moved atoms.
    """

    std: float = 0.3
    structure_prob: float = 0.5
    min_factor: float = 0.0

    #: no separate noise prediction: the displacement target absorbs the move
    predicts_noise = False

    def __post_init__(self) -> None:
        if not self.std >= 0:
            raise ValueError(f"std={self.std}: the noise std (Å) must be >= 0.")
        if not 0 < self.structure_prob <= 1:
            raise ValueError(
                f"structure_prob={self.structure_prob}: the fraction of structures moved must "
                "be in (0, 1]."
            )
        if not 0 <= self.min_factor <= 1:
            raise ValueError(f"min_factor={self.min_factor}: must be in [0, 1].")

    @property
    def target_scale(self) -> float:
        return 1.0

    def corrupt(
        self,
        graph: dict[str, torch.Tensor],
        forces: torch.Tensor | None,
        cutoff: float,
        displacement: torch.Tensor | None = None,
    ) -> Corruption:
        """Move a batch towards its relaxed positions (``displacement``: ``(N, 3)``, the
        minimum-image ``pos_relaxed − pos``, Å), with torch's global generator. ``forces``
        is unused (the `PositionNoise` signature): the model sees a plain moved structure."""
        if displacement is None:
            raise ValueError(
                "train.denoising.kind=relaxed_interpolation moves atoms towards their relaxed "
                "positions: the task needs a displacement target (outputs: {relaxed_"
                "displacement: {kind: displacement, key: pos_relaxed}})."
            )
        pos = graph["pos"]
        n, device, batch = pos.shape[0], pos.device, graph["batch"]
        picked = torch.rand(int(graph["natoms"].shape[0]), dtype=torch.float64, device=device)
        picked = (picked < self.structure_prob)[batch]
        factor = torch.empty(n, 1, dtype=torch.float64, device=device)
        factor.uniform_(self.min_factor, 1.0)
        noise = torch.randn(n, 3, dtype=torch.float64, device=device) * self.std
        mask = picked & ~graph["fixed"].bool()
        move = (1.0 - factor) * displacement.to(device=device, dtype=torch.float64) + noise
        move = (move * mask[:, None]).to(pos.dtype)
        # a plain moved structure: no noise to predict, nothing for a force encoding
        return Corruption(_moved_graph(graph, move, cutoff), move, mask, self.target_scale)


def _moved_graph(
    graph: dict[str, torch.Tensor], move: torch.Tensor, cutoff: float
) -> dict[str, torch.Tensor]:
    """A copy of ``graph`` with its atoms moved by ``move`` (N, 3): edge vectors recomputed,
    edges stretched beyond ``cutoff`` dropped."""
    pos = graph["pos"]
    moved = pos + move
    vec = edge_vectors(moved, graph["cell"], graph["batch"], graph["edge_index"],
                       graph["cell_offsets"])  # fmt: skip
    keep = vec.norm(dim=1) <= cutoff
    out = dict(graph)
    out["pos"] = moved
    out["edge_vec"] = vec
    if not bool(keep.all()):
        out["edge_index"] = graph["edge_index"][:, keep]
        for key in _EDGE_KEYS:
            if key in out:
                out[key] = out[key][keep]
    return out
