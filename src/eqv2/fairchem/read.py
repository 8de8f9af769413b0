"""Read fairchem/OCP EquiformerV2 checkpoints into eqv2's terms.

:func:`read_fairchem_checkpoint` follows what fairchem-core 1.10's own calculator does:

1. the file is loaded with the restricted unpickler (:func:`eqv2.model.checkpoint.safe_load`);
2. the model config comes from ``config["model"]``: an old string name plus
   ``config["model_attributes"]``, a ``{"name": "hydra", "backbone": …, "heads": …}`` dict, or a
   ``{"name": "equiformer_v2", …kwargs}`` dict (:mod:`eqv2.fairchem.config`);
3. all leading ``module.`` prefixes are stripped, hydra names mapped to monolithic ones and
   fairchem's buffers (constants recomputed from the config) dropped (:mod:`eqv2.fairchem.keys`);
4. the ``state_dict`` weights are used (fairchem 1.10 ignores the EMA at inference); with
   ``use_ema=True`` the EMA shadow weights replace them (:mod:`eqv2.fairchem.ema`);
5. normalisers (old ``{target, grad_target}`` × ``{mean, std}`` or new ``{energy, forces,
   stress_isotropic, stress_anisotropic, stress}`` × ``{mean, rmsd}``; others such as DeNS's
   ``denoising_pos_target`` are ignored) and linear element references are read.

Heads: the energy, direct-force, rank-2 stress and DeNS heads are supported
(``eqv2.model.heads.HEAD_TYPES``); a file with any other head is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from eqv2.fairchem.config import default_heads, resolve_model
from eqv2.fairchem.ema import ema_state_dict
from eqv2.fairchem.keys import Layout, from_fairchem_state_dict
from eqv2.fairchem.write import DENOISING_NAMES
from eqv2.model.checkpoint import FORMAT_NAME, CheckpointError, PathLike, safe_load
from eqv2.model.config import EquiformerV2Config

__all__ = [
    "FairchemCheckpoint",
    "denoising_recipe",
    "is_fairchem_checkpoint",
    "read_fairchem_checkpoint",
]

#: normalisers eqv2 applies (fairchem's target names)
_NORMALIZED_TARGETS = ("energy", "forces", "stress", "stress_isotropic", "stress_anisotropic")


@dataclass
class FairchemCheckpoint:
    """An EquiformerV2 checkpoint read from fairchem, in eqv2's terms.

    Attributes:
        config: the model config.
        state_dict: parameters only, eqv2 (monolithic fairchem) names, tensors as stored.
        normalizers: ``{"energy": {"mean", "std"}, "forces": {"mean", "std"}}`` (floats) or None.
            The model's raw outputs are denormalised as ``raw * std + mean``. When the file
            normalises only one target, the other gets ``mean=0, std=1``.
        element_references: per-element energy references ``(n,)`` indexed by atomic number
            (fairchem: 119 entries) to be summed over atoms and added to the energy, or None.
        layout: the file's key layout.
        used_ema: whether ``state_dict`` holds the EMA shadow weights.
        heads: fairchem head configs (``{name: {"module": ..., ...}}``); synthesised for
            monolithic files.
        buffers: the file's fairchem buffers (eqv2 names); not needed by eqv2, kept so that
            :func:`to_fairchem_checkpoint` can write a file fairchem strict-loads.
        fairchem_config: the file's full ``config`` entry, unchanged.
        path: the file read, if any.
    """

    config: EquiformerV2Config
    state_dict: dict[str, torch.Tensor]
    normalizers: dict[str, dict[str, float]] | None
    element_references: torch.Tensor | None
    layout: Layout
    used_ema: bool
    heads: dict[str, Any]
    buffers: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    fairchem_config: dict[str, Any] = field(default_factory=dict, repr=False)
    path: Path | None = None


def is_fairchem_checkpoint(obj: Any) -> bool:
    """Whether ``obj`` (a loaded file) looks like a fairchem/OCP trainer checkpoint:
    a dict with a ``state_dict`` mapping and a ``config`` with a ``model`` entry."""
    return (
        isinstance(obj, Mapping)
        and obj.get("format") != FORMAT_NAME
        and isinstance(obj.get("state_dict"), Mapping)
        and isinstance(obj.get("config"), Mapping)
        and "model" in obj["config"]
    )


def _is_bare_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _scalar(value: Any, where: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: expected a number, got {value!r}.") from exc


def _read_normalizers(raw: Any, where: str) -> dict[str, dict[str, float]] | None:
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{where}: 'normalizers' should be a dict, got {type(raw)!r}.")
    rename = {"target": "energy", "grad_target": "forces"}
    out: dict[str, dict[str, float]] = {}
    for key, stats in raw.items():
        target = rename.get(key, key)
        if target not in _NORMALIZED_TARGETS:
            continue  # e.g. DeNS's denoising_pos_target: no such output at inference
        if not isinstance(stats, Mapping) or "mean" not in stats:
            raise CheckpointError(f"{where}: normalizers[{key!r}] = {stats!r} has no 'mean'.")
        scale_key = "rmsd" if "rmsd" in stats else "std" if "std" in stats else None
        if scale_key is None:
            raise CheckpointError(
                f"{where}: normalizers[{key!r}] has neither 'rmsd' (fairchem 1.x) nor 'std' "
                "(old OCP)."
            )
        out[target] = {
            "mean": _scalar(stats["mean"], f"{where}: normalizers[{key!r}]['mean']"),
            "std": _scalar(stats[scale_key], f"{where}: normalizers[{key!r}][{scale_key!r}]"),
        }
    if not out:
        return None
    for target in ("energy", "forces"):
        out.setdefault(target, {"mean": 0.0, "std": 1.0})
    return {k: out[k] for k in _NORMALIZED_TARGETS if k in out}


def _read_element_references(raw: Any, where: str) -> torch.Tensor | None:
    if not raw:
        return None
    energy = raw.get("energy") if isinstance(raw, Mapping) else None
    if energy is None:
        return None
    refs = energy.get("element_references") if isinstance(energy, Mapping) else None
    if not isinstance(refs, torch.Tensor) or refs.ndim != 1:
        raise CheckpointError(
            f"{where}: elementrefs['energy'] should hold a 1-D 'element_references' tensor "
            f"indexed by atomic number, got {refs!r}."
        )
    return refs


def read_fairchem_checkpoint(
    obj_or_path: PathLike | Mapping[str, Any],
    *,
    use_ema: bool = False,
    config: EquiformerV2Config | Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
    source: str | None = None,
) -> FairchemCheckpoint:
    """Read a fairchem/OCP EquiformerV2 checkpoint (file or loaded dict).

    Accepts training-state files (``checkpoint.pt``: state_dict, EMA, optimizer ...),
    ``best_checkpoint.pt``-style files (no EMA), and bare fairchem state dicts (monolithic or
    hydra keys, with or without ``module.`` prefixes and buffers), for which ``config`` is
    required. This is the one entry point :func:`eqv2.load_model` uses for fairchem files.

    Args:
        obj_or_path: a path, a loaded checkpoint dict, or a bare state dict.
        use_ema: use the EMA shadow weights instead of ``state_dict`` (fairchem 1.10's calculator
            does not; OCP 0.x's did). Raises if the file has no EMA.
        config: the model config (EquiformerV2Config, backbone kwargs like
            ``eqv2_small/config.json``'s ``backbone_config``, or a fairchem model config).
            Required for bare state dicts; overrides the file's config otherwise.
        trust_pickle: passed to :func:`safe_load` when a path is given.
        source: how messages name a loaded dict's origin (e.g. the path it was read from);
            default: the path, or "the checkpoint".

    Raises:
        CheckpointError: the file is not an EquiformerV2 checkpoint, has an invalid config or
            unsupported heads, or the EMA does not match the parameters.
    """
    path: Path | None = None
    if isinstance(obj_or_path, str | Path) or hasattr(obj_or_path, "__fspath__"):
        path = Path(obj_or_path)  # type: ignore[arg-type]
        obj: Any = safe_load(path, trust_pickle=trust_pickle)
    else:
        obj = obj_or_path
    where = repr(source or str(path)) if source or path is not None else "the checkpoint"

    file_sd, fc_config = _weights_and_config(obj, config, where)
    model_config, heads = resolve_model(fc_config, config, where)
    if fc_config:
        normalizers = _read_normalizers(obj.get("normalizers"), where)
        element_refs = _read_element_references(obj.get("elementrefs"), where)
    else:
        normalizers, element_refs = None, None
    try:
        params, buffers, layout = from_fairchem_state_dict(file_sd)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    if use_ema:
        ema = obj.get("ema") if fc_config else None
        params = ema_state_dict(params, ema, file_sd, layout, where)

    return FairchemCheckpoint(
        config=model_config,
        state_dict=params,
        normalizers=normalizers,
        element_references=element_refs,
        layout=layout,
        used_ema=use_ema,
        heads=heads or default_heads(params),
        buffers=buffers,
        fairchem_config=fc_config,
        path=path,
    )


def _weights_and_config(
    obj: Any, config: object, where: str
) -> tuple[Mapping[str, torch.Tensor], dict[str, Any]]:
    """(the file's state dict, its fairchem config or ``{}`` for a bare state dict), or a
    :class:`CheckpointError` saying what the object is instead."""
    if is_fairchem_checkpoint(obj):
        return obj["state_dict"], dict(obj["config"])
    if _is_bare_state_dict(obj):
        if config is None:
            raise CheckpointError(
                f"{where} is a bare state dict without a model config: pass config= (the "
                "EquiformerV2 backbone arguments, e.g. the 'model_attributes' of the training "
                "config)."
            )
        return obj, {}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT_NAME:
        raise CheckpointError(
            f"{where} is an eqv2 checkpoint, not a fairchem one: use "
            "eqv2.model.checkpoint.load_checkpoint."
        )
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{where} is not a fairchem checkpoint, nor an eqv2 one (expected a dict with "
        "'state_dict' and 'config', or a bare state dict of tensors together with config=); "
        f"found {keys}."
    )


def denoising_recipe(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The DeNS training recipe of a fairchem checkpoint (its ``optim.denoising_pos_params``
    and ``denoising_pos_coefficient``) as eqv2's ``train.denoising`` mapping, or None when the
    file was not trained with DeNS (``optim.use_denoising_pos`` unset or false)."""
    optim = (checkpoint.get("config") or {}).get("optim") or {}
    if not optim.get("use_denoising_pos"):
        return None
    params = optim.get("denoising_pos_params") or {}
    recipe = {eq: params[fc] for eq, fc in DENOISING_NAMES.items() if fc in params}
    if optim.get("denoising_pos_coefficient") is not None:
        recipe["coefficient"] = optim["denoising_pos_coefficient"]
    return {k: recipe[k] for k in ("prob", "coefficient", *DENOISING_NAMES) if k in recipe}
