"""Fine-tuning: start a new training run from a trained model (eqv2 or fairchem checkpoint).

Not the same as ``--resume``. Resuming continues one run exactly (weights, optimiser moments,
learning-rate schedule, data order, RNG). Fine-tuning starts a new run: only the weights come
from the checkpoint, and the optimiser, schedule and step count start fresh.

* **Model config**: the checkpoint's. Model keys that the run config sets must agree with it,
  except the training-only ones (`TRAINING_ONLY_KEYS`: dropout rates), which the run may change.
  A run config without a model section takes the checkpoint's config as it is.
* **Direct → conservative**: ``model: {direct_forces: false}`` on a direct-force checkpoint
  fine-tunes it into a conservative model (forces = −dE/dx): the direct force head is dropped
  and every other weight kept (the eSEN / EquiformerV3 schedule; ``configs/
  conservative_finetune.yaml``, ``docs/equiformer_v3.md``). The other direction is refused
  (a conservative model has no force head to start from).
* **Targets**: ``keep`` (default) the checkpoint's normalisers and element references, which
  are what its output heads were trained to predict, or ``refit`` them on the new training set
  as a run from scratch does.
* **Freezing**: parameter groups (`FREEZE_GROUPS`) or parameter-name prefixes are not trained
  (``requires_grad=False``); the optimiser and the EMA leave them out.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from torch import nn

from eqv2.model.config import EquiformerV2Config
from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.model.heads import head_type
from eqv2.model.loading import load_model
from eqv2.model.potential import Potential
from eqv2.train.run_config import RunConfig
from eqv2.train.target_fit import TargetStatistics, fit_targets, stream_statistics
from eqv2.train.trainer import BEST_NAME, CHECKPOINT_NAME

#: Model keys a fine-tuning run may set differently from the checkpoint (regularisation only).
TRAINING_ONLY_KEYS = ("alpha_drop", "drop_path_rate", "proj_drop")
#: Model keys that only choose the random initialisation, which the loaded weights replace.
INIT_ONLY_KEYS = ("weight_init",)
_HEADS = ("energy_block", "force_block", "stress_head")
#: the module a direct → conservative fine-tune drops
_FORCE_HEAD = "force_block"
#: ``finetune.freeze`` group names and the parameter-name prefixes they cover (None: all but
#: the output heads).
FREEZE_GROUPS: dict[str, tuple[str, ...] | None] = {
    "backbone": None,
    "heads": _HEADS,
    "energy_head": ("energy_block",),
    "force_head": ("force_block",),
}
#: Files a training run writes into its output directory (the source must not be one of them).
_RUN_OUTPUTS = (CHECKPOINT_NAME, BEST_NAME, "final.pt")


def merge_model_config(
    run_model: EquiformerV2Config,
    model_keys: Sequence[str],
    checkpoint_config: EquiformerV2Config,
    where: str,
    checkpoint: str,
) -> EquiformerV2Config:
    """The model config a fine-tuning run trains: the checkpoint's, with the run's dropouts.

    Args:
        run_model: the run config's model section (defaults for keys it does not set).
        model_keys: the model keys the run config actually set.
        checkpoint_config: the checkpoint's model config.
        where: the run config's name, for messages.
        checkpoint: the checkpoint's name, for messages.

    Returns:
        ``checkpoint_config``, or a copy with the run's values of `TRAINING_ONLY_KEYS` and,
        for ``direct_forces: false`` on a direct-force checkpoint, `conservative_updates`.

    Raises:
        ValueError: a key the run sets differs from the checkpoint's (every such key is named,
            with both values).
    """
    mine, theirs = run_model.to_dict(), checkpoint_config.to_dict()
    updates, mismatches = {}, []
    for key in model_keys:
        if key not in mine or key in INIT_ONLY_KEYS:  # fairchem pipeline keys, init scheme
            continue
        if key in TRAINING_ONLY_KEYS:
            updates[key] = mine[key]
        elif key == "direct_forces" and theirs[key] and not mine[key]:
            updates.update(conservative_updates(checkpoint_config))
        elif mine[key] != theirs[key]:
            mismatches.append(f"model.{key}={mine[key]!r} (checkpoint: {theirs[key]!r})")
    if mismatches:
        raise ValueError(
            f"{where}: the model config does not match the checkpoint {checkpoint} it fine-tunes: "
            f"{'; '.join(mismatches)}. A fine-tuned model keeps the checkpoint's architecture: "
            "remove these keys (or the whole model section, and the checkpoint's config is used) "
            "or fine-tune from a checkpoint with these values. Only "
            f"{', '.join(TRAINING_ONLY_KEYS)} may differ from the checkpoint, and "
            "direct_forces may go from true to false (direct -> conservative fine-tuning)."
        )
    if not updates:
        return checkpoint_config
    return dataclasses.replace(checkpoint_config, **updates)


def conservative_updates(config: EquiformerV2Config) -> dict[str, Any]:
    """Config changes that turn a direct-force model into a conservative one: no direct forces,
    and no force head among the declared ``heads`` (fairchem-style configs list it)."""
    updates: dict[str, Any] = {"direct_forces": False}
    if config.heads is not None:
        updates["heads"] = {
            name: spec
            for name, spec in config.heads.items()
            if head_type(spec.get("module"), name).kind != "forces"
        }
    return updates


def transfer_weights(source: nn.Module, target: nn.Module) -> list[str]:
    """Load ``source``'s weights into ``target`` (the same architecture, except that ``target``
    may lack the direct force head); returns the names of the dropped parameters.

    Raises:
        RuntimeError: any other key is missing or unexpected, or a shape differs.
    """
    state = source.state_dict()
    wanted = target.state_dict()
    dropped = [k for k in state if k not in wanted and k.startswith(_FORCE_HEAD + ".")]
    target.load_state_dict({k: v for k, v in state.items() if k not in dropped})
    return dropped


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_parameters(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Stop training the parameters that ``patterns`` name; returns their names.

    Args:
        model: the network (an `EquiformerV2`).
        patterns: group names from `FREEZE_GROUPS` (``backbone`` is everything but the energy and
            force heads) or parameter-name prefixes such as ``sphere_embedding`` or ``blocks.0``.

    Raises:
        ValueError: a pattern matches no parameter (the message lists what exists), or nothing
            would be left to train.
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    frozen: set[str] = set()
    for pattern in patterns:
        group = FREEZE_GROUPS.get(pattern, (pattern,))
        hit = [n for n in names if (not _under(n, _HEADS) if group is None else _under(n, group))]
        if not hit:
            tops = sorted({n.split(".")[0] for n in names})
            raise ValueError(
                f"finetune.freeze: {pattern!r} matches no trainable parameter. Use a group "
                f"({', '.join(FREEZE_GROUPS)}) or a parameter-name prefix such as "
                f"{', '.join(tops)} or blocks.0."
            )
        frozen.update(hit)
    if frozen >= set(names):
        raise ValueError(
            f"finetune.freeze={list(patterns)} freezes every parameter: nothing would be trained. "
            "Leave at least one part out (e.g. freeze: [backbone] trains the heads)."
        )
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    return sorted(frozen)


def _warn_missing_references(
    potential: Potential, train: TargetStatistics, checkpoint: str
) -> None:
    """Warn when the kept element references give 0 eV to elements of the new data."""
    if not potential.has_element_references:
        return
    refs = potential.element_references.cpu().numpy()
    present = np.flatnonzero(train.counts > 0)
    missing = [chemical_symbols[z] for z in present if refs[z] == 0.0]
    if missing:
        warnings.warn(
            f"elements {', '.join(missing)} of the training data have no element reference in "
            f"{checkpoint} (0 eV): the model has to learn their whole energy. Consider "
            "finetune.targets: refit.",
            stacklevel=3,
        )


def start_finetune(
    run: RunConfig, train: TargetStatistics | Any, out_dir: str | Path
) -> tuple[Potential, RunConfig]:
    """The starting model of a fine-tuning run (``run.finetune.init_from`` is set).

    Args:
        run: the run config; ``run.finetune`` says where the weights come from, which targets to
            use and what to freeze.
        train: the training set (a dataset or list of structures) or its `TargetStatistics`
            (for ``targets: refit`` and the element-reference check).
        out_dir: the run's output directory (the checkpoint may not be a file the run writes).

    Returns:
        The potential to train (float32, CPU; frozen parameters have ``requires_grad=False``)
        and ``run`` with the model config actually trained.

    Raises:
        ValueError: the run's model config contradicts the checkpoint's, the checkpoint would
            be overwritten by the run, ``data.e0s`` is set while the checkpoint's targets are
            kept, or ``freeze`` is invalid.
    """
    ft = run.finetune
    source = Path(str(ft.init_from))
    out = Path(out_dir)
    if source.name in _RUN_OUTPUTS and source.resolve().parent == out.resolve():
        raise ValueError(
            f"fine-tuning from {source} would overwrite it: the run writes {source.name} into "
            f"{out}. Choose another output directory (--out) or copy the checkpoint elsewhere."
        )
    if ft.targets == "keep" and run.data.e0s:
        raise ValueError(
            f"{run.source}: data.e0s is set, but finetune.targets is 'keep' (the checkpoint's "
            "element references are used). Set finetune.targets: refit to use your E0s, or "
            "remove data.e0s."
        )
    if not isinstance(train, TargetStatistics):
        train = stream_statistics(train)
    loaded = load_model(source, use_ema=ft.use_ema)
    config = merge_model_config(run.model, run.model_keys, loaded.config, run.source, str(source))
    model = loaded.model
    if config is not loaded.config:  # other dropouts or no force head: rebuilt network
        model = EquiformerV2(config)
        transfer_weights(loaded.model, model)
    if ft.targets == "refit":
        normalizers, refs = fit_targets(train, run.data)
        potential = Potential(model, normalizers, None if refs is None else torch.as_tensor(refs))
    else:
        refs = loaded.element_references if loaded.has_element_references else None
        potential = Potential(model, loaded.normalizers, refs)
        _warn_missing_references(potential, train, str(source))
    if ft.freeze:
        freeze_parameters(model, ft.freeze)
    resolved = dataclasses.replace(run, model=config, model_keys=tuple(config.to_dict()))
    return potential, resolved


__all__ = [
    "FREEZE_GROUPS",
    "TRAINING_ONLY_KEYS",
    "conservative_updates",
    "freeze_parameters",
    "merge_model_config",
    "start_finetune",
    "transfer_weights",
]
