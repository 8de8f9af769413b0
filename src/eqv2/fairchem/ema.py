"""A fairchem checkpoint's EMA shadow weights, matched to parameter names.

fairchem stores its exponential moving average as ``ema["shadow_params"]``: a bare list of
tensors in the order of the model's trainable parameters, without names. The names are recovered
from the state dict's own key order (see :func:`ema_state_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from eqv2.fairchem.keys import Layout, eqv2_named_entries, is_fairchem_buffer
from eqv2.model.checkpoint import CheckpointError
from eqv2.model.state_dict import format_shape

__all__ = ["FROZEN_PARAMETERS", "ema_state_dict"]

# Parameters fairchem creates with requires_grad=False: kept in state_dict, skipped by its EMA.
FROZEN_PARAMETERS = frozenset({"energy_lin_ref"})


def _shadow_by_name(
    ema: Any, file_state_dict: Mapping[str, torch.Tensor], layout: Layout, where: str
) -> dict[str, torch.Tensor]:
    """eqv2-named EMA weights from ``ema["shadow_params"]``.

    The shadow list follows fairchem's ``model.parameters()`` restricted to trainable parameters.
    ``state_dict()`` lists parameters in the same relative order (it visits each module's own
    parameters, then its buffers, then its children; ``parameters()`` does the same without the
    buffers), so the order is recovered from the file's own key order: parameters only, frozen
    ones (``energy_lin_ref``) skipped, and tensors shared under two names counted once.
    """
    if not isinstance(ema, Mapping) or not isinstance(ema.get("shadow_params"), list | tuple):
        raise CheckpointError(
            f"{where} has no EMA weights (no ema['shadow_params']). Load it with use_ema=False; "
            "'best_checkpoint.pt'-style files already store the EMA weights in 'state_dict'."
        )
    shadow = list(ema["shadow_params"])
    trainable: list[tuple[str, torch.Tensor]] = []
    seen: set[tuple[int, int]] = set()
    for name, value in eqv2_named_entries(file_state_dict, layout):
        if is_fairchem_buffer(name) or name in FROZEN_PARAMETERS:
            continue
        ident = (value.untyped_storage().data_ptr(), value.storage_offset())
        if ident in seen and value.numel() > 0:
            continue  # parameters() yields a shared parameter once
        seen.add(ident)
        trainable.append((name, value))
    if len(trainable) != len(shadow):
        raise CheckpointError(
            f"{where}: the EMA holds {len(shadow)} tensors but the state dict has "
            f"{len(trainable)} trainable parameters, so the EMA cannot be matched to parameter "
            "names (the model probably had frozen parameters during training). Load with "
            "use_ema=False."
        )
    out: dict[str, torch.Tensor] = {}
    for i, ((name, param), tensor) in enumerate(zip(trainable, shadow, strict=True)):
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: ema['shadow_params'][{i}] is not a tensor.")
        if tensor.shape != param.shape:
            raise CheckpointError(
                f"{where}: ema['shadow_params'][{i}] has shape {format_shape(tensor.shape)} but "
                f"parameter {name!r} (trainable parameter number {i}) has "
                f"{format_shape(param.shape)}: the EMA does not follow the state dict's parameter "
                "order. Load with use_ema=False."
            )
        out[name] = tensor
    return out


def ema_state_dict(
    params: Mapping[str, torch.Tensor],
    ema: Any,
    file_state_dict: Mapping[str, torch.Tensor],
    layout: Layout,
    where: str,
) -> dict[str, torch.Tensor]:
    """``params`` (eqv2-named parameters of the file) with the EMA shadow weights swapped in.

    Frozen parameters (``energy_lin_ref``), which the EMA skips, keep their stored values; the
    result keeps the state dict's key order. Raises :class:`CheckpointError` when the file has
    no EMA or the EMA does not match the parameters.
    """
    merged = _shadow_by_name(ema, file_state_dict, layout, where) | {
        k: v for k, v in params.items() if k in FROZEN_PARAMETERS
    }
    return {k: merged[k] for k, _ in eqv2_named_entries(file_state_dict, layout) if k in merged}
