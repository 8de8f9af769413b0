"""``load_model``: one call from a checkpoint (eqv2 or fairchem) to a ready ``Potential``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from eqv2.model.checkpoint import (
    CheckpointError,
    ema_weights,
    safe_load,
    save_checkpoint,
    validate_checkpoint,
)
from eqv2.model.config import EquiformerV2Config
from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.model.potential import Potential
from eqv2.model.state_dict import validate_state_dict


def _build(
    config: EquiformerV2Config,
    state_dict: Mapping[str, torch.Tensor],
    normalizers: Mapping[str, Mapping[str, float]] | None,
    element_references: torch.Tensor | None,
    dtype: torch.dtype | None,
    device: str | torch.device,
    source: str,
) -> Potential:
    model = EquiformerV2(config).to(dtype or torch.float32)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    validate_state_dict(state_dict, expected, source=source)
    with torch.no_grad():  # copies cast to the model's dtype (float64 files stay exact)
        model.load_state_dict(dict(state_dict), strict=True)
    potential = Potential(model, normalizers, element_references)
    potential.to(device=device, dtype=dtype or torch.float32)
    return potential.eval()


def _eqv2_ema_weights(ckpt: Mapping[str, Any], label: str) -> dict[str, torch.Tensor]:
    """The weights of an eqv2 training-state checkpoint with its EMA shadow swapped in."""
    shadow = ema_weights(ckpt)
    if shadow is None:
        raise CheckpointError(
            f"{label} holds no EMA weights. eqv2 writes the EMA weights into final.pt and best.pt "
            "themselves: load those with use_ema=False. use_ema=True reads the EMA kept in a "
            "training-state checkpoint.pt written with train.ema_decay set."
        )
    unknown = sorted(set(shadow) - set(ckpt["state_dict"]))
    if unknown:
        raise CheckpointError(
            f"{label}: the EMA holds parameters the model lacks ({unknown[:3]}); the file is "
            "damaged. Load it with use_ema=False."
        )
    return {name: shadow.get(name, value) for name, value in ckpt["state_dict"].items()}


def load_model(
    source: str | os.PathLike | Mapping[str, Any],
    config: EquiformerV2Config | Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    *,
    use_ema: bool = False,
    trust_pickle: bool = False,
) -> Potential:
    """Load a model ready for ``predict``.

    Args:
        source: an eqv2 checkpoint path, a fairchem/OCP checkpoint path (training-state or
            best-checkpoint files, monolithic or hydra layouts), or a fairchem-layout state dict
            (a path or an in-memory mapping) together with ``config``.
        config: the model config for a bare state dict (the backbone arguments, e.g. the
            ``backbone_config`` of a fairchem YAML); overrides a file's config otherwise.
        dtype: ``torch.float32`` (default) or ``torch.float64``.
        device: where to run.
        use_ema: use a fairchem file's EMA weights instead of its ``state_dict`` weights
            (fairchem 1.10's calculator uses ``state_dict``; OCP 0.x's used the EMA), or the EMA
            kept in an eqv2 training-state ``checkpoint.pt`` (eqv2's ``final.pt``/``best.pt``
            already hold EMA weights and have no other).
        trust_pickle: allow unpickling arbitrary objects. Only for files from a source you
            trust: by default loading never runs code stored in the file.

    Normalisers and element references stored in the checkpoint are applied by ``predict``
    exactly as fairchem's ``OCPCalculator`` applies them.
    """
    if isinstance(source, Mapping):
        obj: Any = source
        label = "<state dict>"
    else:
        label = str(source)
        obj = safe_load(Path(source), trust_pickle=trust_pickle)

    if isinstance(obj, Mapping) and obj.get("format") == "eqv2-checkpoint":
        ckpt = validate_checkpoint(obj, label)  # the file is read once, above
        cfg = config if config is not None else ckpt["config"]
        if not isinstance(cfg, EquiformerV2Config):
            cfg = EquiformerV2Config.from_dict(cfg)
        return _build(
            cfg,
            _eqv2_ema_weights(ckpt, label) if use_ema else ckpt["state_dict"],
            ckpt.get("normalizers"),
            ckpt.get("element_references"),
            dtype,
            device,
            label,
        )
    # imported here: eqv2.fairchem builds on this package's config, heads and file I/O
    from eqv2.fairchem import read_fairchem_checkpoint

    fc = read_fairchem_checkpoint(
        obj, use_ema=use_ema, config=config, source=None if isinstance(source, Mapping) else label
    )
    return _build(
        fc.config, fc.state_dict, fc.normalizers, fc.element_references, dtype, device, label
    )


def save_model(
    potential: Potential, path: str | os.PathLike, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``potential`` as an eqv2 checkpoint (weights, config, normalisers, references)."""
    return save_checkpoint(
        path,
        state_dict={k: v.detach().cpu() for k, v in potential.model.state_dict().items()},
        config=potential.config.to_dict(),
        normalizers=potential.normalizers,
        element_references=(
            potential.element_references.cpu() if potential.has_element_references else None
        ),
        extra=extra,
    )


def export_fairchem(potential: Potential, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write ``potential`` as a fairchem 1.x checkpoint (see
    :func:`eqv2.fairchem.to_fairchem_checkpoint`)."""
    from eqv2.fairchem import to_fairchem_checkpoint

    to_fairchem_checkpoint(
        path,
        state_dict={k: v.detach().cpu() for k, v in potential.model.state_dict().items()},
        config=potential.config,
        normalizers=potential.normalizers,
        element_references=(
            potential.element_references.cpu() if potential.has_element_references else None
        ),
        **kwargs,
    )
    return Path(path)
