"""eqv2's own checkpoint format: :func:`save_checkpoint`, :func:`load_checkpoint`.

eqv2 checkpoints hold only plain types and tensors, so they always load under PyTorch's
restricted unpickler (:func:`safe_load`), and they are written atomically (:func:`atomic_save`):
a crash while saving leaves the previous file intact. Safe reading and atomic writing of any
``torch.save`` file live in :mod:`eqv2.model.torch_files`; their names are re-exported here.

The on-disk layout (``format_version`` 1) is one dictionary::

    {"format": "eqv2-checkpoint", "format_version": 1, "eqv2_version": "0.1.0",
     "config": {...EquiformerV2Config fields...}, "state_dict": {name: Tensor},
     "normalizers": {"energy": {"mean": float, "std": float}, "forces": {...}} | None,
     "element_references": Tensor (119,) | None, "extra": {...plain types and tensors...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from eqv2.model.config import EquiformerV2Config
from eqv2.model.torch_files import (
    CheckpointError,
    CorruptCheckpointError,
    PathLike,
    UnsafeCheckpointError,
    atomic_save,
    remove_stale_temporaries,
    safe_load,
    verify_integrity,
)
from eqv2.version import __version__

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "CorruptCheckpointError",
    "PathLike",
    "TRAINING_STATE_KEY",
    "UnsafeCheckpointError",
    "atomic_save",
    "ema_weights",
    "load_checkpoint",
    "remove_stale_temporaries",
    "safe_load",
    "save_checkpoint",
    "validate_checkpoint",
    "verify_integrity",
]

#: Value of the ``"format"`` entry of every eqv2 checkpoint.
FORMAT_NAME = "eqv2-checkpoint"
#: Newest checkpoint layout this version of eqv2 writes and reads.
FORMAT_VERSION = 1
#: Where a training-state checkpoint (``checkpoint.pt``) keeps the trainer's state:
#: ``extra[TRAINING_STATE_KEY]``. The model layer reads one part of it, the EMA weights by
#: parameter name at ``["ema"]["shadow"]`` (`ema_weights`); the rest belongs to the trainer
#: (`eqv2.train.training_state.TrainingState`).
TRAINING_STATE_KEY = "training_state"


def ema_weights(ckpt: Mapping[str, Any]) -> Mapping[str, torch.Tensor] | None:
    """The EMA weights by parameter name of a training-state checkpoint, None if it has none."""
    extra = ckpt.get("extra")
    state = extra.get(TRAINING_STATE_KEY) if isinstance(extra, Mapping) else None
    ema = state.get("ema") if isinstance(state, Mapping) else None
    shadow = ema.get("shadow") if isinstance(ema, Mapping) else None
    return shadow if isinstance(shadow, Mapping) else None


# -- eqv2's own format ----------------------------------------------------------------------------

_PLAIN_TYPES = (str, int, float, bool, type(None))


def _to_plain(value: Any, where: str) -> Any:
    """A copy of ``value`` built from tensors and builtin containers only, or TypeError.

    Exact types are required: subclasses (``numpy.float64`` is a ``float``) would be pickled as
    their own class, which the restricted unpickler refuses.
    """
    if isinstance(value, torch.Tensor) or type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(key) not in _PLAIN_TYPES:
                raise TypeError(
                    f"{where} has a key of type {type(key).__name__}; use str or int keys."
                )
            out[key] = _to_plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        items = [_to_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; eqv2 checkpoints hold "
        "only tensors and plain Python values (dict, list, tuple, str, int, float, bool, None) so "
        "that they load without unpickling code. Convert it (e.g. float(x), x.tolist())."
    )


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """Detached CPU tensor that does not drag a larger shared storage into the file."""
    tensor = tensor.detach().cpu()
    if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size():
        tensor = tensor.clone()
    return tensor


def _plain_normalizers(normalizers: Mapping[str, Any] | None) -> dict[str, dict[str, float]] | None:
    if normalizers is None:
        return None
    out: dict[str, dict[str, float]] = {}
    for target, stats in normalizers.items():
        if not isinstance(stats, Mapping) or not {"mean", "std"} <= set(stats):
            raise ValueError(
                f"normalizers[{target!r}] = {stats!r}: expected a mapping with 'mean' and 'std'."
            )
        out[str(target)] = {"mean": float(stats["mean"]), "std": float(stats["std"])}
    return out


def save_checkpoint(
    path: PathLike,
    *,
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any] | Any,
    normalizers: Mapping[str, Mapping[str, float]] | None = None,
    element_references: torch.Tensor | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an eqv2 checkpoint atomically.

    Args:
        path: destination file (its directory is created if needed).
        state_dict: the model's parameters (``EquiformerV2.state_dict()``).
        config: the model config: a dict of :class:`EquiformerV2Config` fields, or the config
            object itself (anything with ``to_dict()``).
        normalizers: ``{"energy": {"mean", "std"}, "forces": {"mean", "std"}}`` or None.
        element_references: per-element energy references indexed by atomic number, or None.
        extra: anything else to keep (training state, metadata); only tensors and plain values.

    Returns:
        The path written.

    Raises:
        TypeError: some entry is not a tensor or plain value (the message names it).
        ValueError: the config has an unknown or invalid key (the message names it).
    """
    if hasattr(config, "to_dict") and not isinstance(config, Mapping):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict or EquiformerV2Config, got {type(config)!r}.")
    EquiformerV2Config.from_dict(config)  # fail before writing: unknown/invalid keys
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(value).__name__}, not a tensor.")
    if element_references is not None and not isinstance(element_references, torch.Tensor):
        element_references = torch.as_tensor(element_references)
    payload: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "eqv2_version": __version__,
        "config": _to_plain(config, "config"),
        "state_dict": {str(k): _compact(v) for k, v in state_dict.items()},
        "normalizers": _plain_normalizers(normalizers),
        "element_references": None if element_references is None else _compact(element_references),
        "extra": _to_plain(extra, "extra") if extra is not None else {},
    }
    return atomic_save(payload, path)


def load_checkpoint(path: PathLike, *, trust_pickle: bool = False) -> dict[str, Any]:
    """Read and validate an eqv2 checkpoint written by :func:`save_checkpoint`.

    Returns the checkpoint dictionary (see the module docstring); ``config`` stays a plain dict
    (build the model config with ``EquiformerV2Config.from_dict``). The config is checked here,
    so an unknown or invalid key is reported with the file's name.

    Raises:
        CheckpointError: the file is not an eqv2 checkpoint (for instance a fairchem one), was
            written by a newer eqv2, or is missing entries.
        UnsafeCheckpointError / CorruptCheckpointError / FileNotFoundError: see :func:`safe_load`.
    """
    path = Path(path)
    return validate_checkpoint(safe_load(path, trust_pickle=trust_pickle), str(path))


def validate_checkpoint(ckpt: Any, path: str = "<checkpoint>") -> dict[str, Any]:
    """Check an already-read eqv2 checkpoint (see :func:`load_checkpoint`); ``path`` labels
    the messages. Returns it as a dict; raises :class:`CheckpointError` as ``load_checkpoint``.
    """
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT_NAME:
        looks_fairchem = isinstance(ckpt, Mapping) and "state_dict" in ckpt and "config" in ckpt
        hint = (
            "It looks like a fairchem/OCP checkpoint: read it with "
            "eqv2.fairchem.read_fairchem_checkpoint(path)."
            if looks_fairchem
            else "Check that you passed the right file."
        )
        raise CheckpointError(f"{str(path)!r} is not an eqv2 checkpoint (no format tag). {hint}")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"{str(path)!r}: invalid format_version {version!r}; the file is damaged or was not "
            "written by eqv2."
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} uses eqv2 checkpoint format version {version} (written by eqv2 "
            f"{ckpt.get('eqv2_version', '?')}), but this eqv2 ({__version__}) reads versions "
            f"up to {FORMAT_VERSION}. Upgrade eqv2 to read it."
        )
    required = ("config", "state_dict", "normalizers", "element_references", "extra")
    missing = [key for key in required if key not in ckpt]
    if missing:
        raise CheckpointError(f"{str(path)!r} is missing entries {missing}; the file is damaged.")
    if not isinstance(ckpt["state_dict"], Mapping) or not all(
        isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values()
    ):
        raise CheckpointError(f"{str(path)!r}: 'state_dict' must map names to tensors.")
    if not isinstance(ckpt["config"], Mapping):
        raise CheckpointError(f"{str(path)!r}: 'config' must be a dict.")
    try:
        EquiformerV2Config.from_dict(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} has an invalid model config: {exc}") from exc
    return dict(ckpt)
