"""The paper's optimiser recipe: AdamW groups and a cosine schedule with linear warm-up."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from eqv2.nn.norm import EquivariantLayerNorm, EquivariantLayerNormSH, EquivariantRMSNormSH
from eqv2.nn.so3_linear import SO3Linear

_NORMS = (nn.LayerNorm, EquivariantLayerNorm, EquivariantLayerNormSH, EquivariantRMSNormSH)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Parameters exempt from weight decay: biases, normalisation parameters and embeddings.

    Only the weight matrices of Linear and SO(3)-linear layers and the attention vectors decay.
    """
    exempt: set[str] = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for name, _ in module.named_parameters(recurse=False):
            full = prefix + name
            if isinstance(module, (*_NORMS, nn.Embedding)) or name.endswith("bias"):
                exempt.add(full)
            elif not isinstance(module, (nn.Linear, SO3Linear)) and name != "alpha_dot":
                exempt.add(full)  # anything else unusual (e.g. element references) too
    return exempt


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weights and exempt parameters (see `no_weight_decay_names`).

    Frozen parameters (``requires_grad=False``) are left out.
    """
    exempt = no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in exempt else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(
    warm_done: float, cosine_done: float, warmup_factor: float, lr_min_factor: float
) -> float:
    """LR multiplier from the fractions done of the warm-up and of the cosine (both in
    [0, 1]): linear from ``warmup_factor`` to 1 while ``warm_done`` < 1, then a cosine from 1
    down to ``lr_min_factor`` as ``cosine_done`` goes to 1."""
    if warm_done < 1:
        return warmup_factor * (1 - warm_done) + warm_done
    return lr_min_factor + (1 - lr_min_factor) * 0.5 * (1 + math.cos(math.pi * cosine_done))


def cosine_warmup_factor(
    step: int, total_steps: int, warmup_steps: int, warmup_factor: float, lr_min_factor: float
) -> float:
    """LR multiplier: linear from ``warmup_factor`` to 1 over ``warmup_steps``, then a cosine
    from 1 down to ``lr_min_factor`` at ``total_steps`` (held there afterwards)."""
    warm_done = step / warmup_steps if warmup_steps > 0 and step < warmup_steps else 1.0
    span = max(1, total_steps - warmup_steps)
    return warmup_cosine(
        warm_done, min(1.0, (step - warmup_steps) / span), warmup_factor, lr_min_factor
    )


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup_steps: int,
    warmup_factor: float = 0.2,
    lr_min_factor: float = 0.01,
    betas: Iterable[float] = (0.9, 0.999),
    lr_factor: Callable[[int], float] | None = None,
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the groups above and the warm-up + cosine schedule (stepped per batch).

    ``lr_factor(step)``, when given, replaces the step schedule (e.g. one that follows a time
    budget, `eqv2.train.budget.Budget.lr_factor`); it must be a plain function (a lambda or
    closure), which the scheduler's ``state_dict`` leaves out.
    """
    optimizer = torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=tuple(betas))
    if lr_factor is None:

        def lr_factor(step: int) -> float:
            return cosine_warmup_factor(
                step, total_steps, warmup_steps, warmup_factor, lr_min_factor
            )

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    return optimizer, scheduler
