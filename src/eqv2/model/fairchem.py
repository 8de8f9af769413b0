"""Read fairchem/OCP EquiformerV2 checkpoints, and write files fairchem 1.x can read.

eqv2 names its parameters exactly like fairchem's deprecated monolithic ``EquiformerV2`` (the
layout of the released OC20 checkpoints): ``sphere_embedding.weight``, ``blocks.0.ga.…``,
``energy_block.…``, ``force_block.…``. fairchem 1.x's ``HydraModel`` uses the same names under
``backbone.`` and ``output_heads.<head>.``; training wrappers add leading ``module.`` prefixes.

Reading (:func:`read_fairchem_checkpoint`) follows what fairchem-core 1.10's own calculator does:

1. the file is loaded with the restricted unpickler (:func:`eqv2.model.checkpoint.safe_load`);
2. the model config comes from ``config["model"]``: an old string name plus
   ``config["model_attributes"]``, a ``{"name": "hydra", "backbone": …, "heads": …}`` dict, or a
   ``{"name": "equiformer_v2", …kwargs}`` dict;
3. all leading ``module.`` prefixes are stripped, hydra names mapped to monolithic ones and
   fairchem's buffers (constants recomputed from the config; see :func:`is_fairchem_buffer`)
   dropped;
4. the ``state_dict`` weights are used (fairchem 1.10 ignores the EMA at inference); with
   ``use_ema=True`` the EMA shadow weights replace them;
5. normalisers (old ``{target, grad_target}`` × ``{mean, std}`` or new ``{energy, forces,
   stress_isotropic, stress_anisotropic, stress}`` × ``{mean, rmsd}``; others such as DeNS's
   ``denoising_pos_target`` are ignored) and linear element references are read.

Heads: the energy, direct-force, rank-2 stress and DeNS heads are supported
(``eqv2.model.heads.HEAD_TYPES``); a file with any other head is refused, naming it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from eqv2.model.checkpoint import CheckpointError, PathLike, atomic_save, safe_load
from eqv2.model.config import EquiformerV2Config
from eqv2.model.heads import (
    ATTRIBUTES,
    DEFAULT_HEADS,
    HEAD_TYPES,
    ResolvedHead,
    head_type,
    resolve_heads,
)

__all__ = [
    "ENERGY_HEAD_MODULES",
    "FORCE_HEAD_MODULES",
    "FairchemCheckpoint",
    "StateDictMismatchError",
    "detect_layout",
    "from_fairchem_state_dict",
    "hydra_to_monolithic_key",
    "is_fairchem_buffer",
    "is_fairchem_checkpoint",
    "monolithic_to_hydra_key",
    "read_fairchem_checkpoint",
    "strip_module_prefix",
    "to_fairchem_checkpoint",
    "to_fairchem_state_dict",
    "validate_state_dict",
]

Layout = Literal["monolithic", "hydra"]

#: fairchem head modules whose parameters live under ``energy_block.`` / ``force_block.``.
ENERGY_HEAD_MODULES = frozenset({"equiformer_v2_energy_head", "equiformerV2_scalar_head"})
FORCE_HEAD_MODULES = frozenset({"equiformer_v2_force_head", "equiformerV2_vector_head"})
_BACKBONE_MODELS = frozenset({"equiformer_v2_backbone", "EquiformerV2Backbone"})
_DENS_BACKBONE_MODELS = frozenset({"equiformer_v2_dens_backbone", "EqV2DeNSBackbone"})
#: written to exported files: fairchem 1.x resolves class paths without a registry entry
_DENS_BACKBONE_PATH = "fairchem.core.models.equiformer_v2.equiformer_v2_dens.EqV2DeNSBackbone"
#: normalisers eqv2 applies (fairchem's target names)
_NORMALIZED_TARGETS = ("energy", "forces", "stress", "stress_isotropic", "stress_anisotropic")
_MONOLITHIC_MODELS = frozenset({"equiformer_v2", "EquiformerV2"})
_DEFAULT_HEADS = DEFAULT_HEADS

# fairchem's EquiformerV2 registers these buffers (all deterministic functions of the config):
# the sub-modules below hold nothing but buffers (coefficient maps, Wigner helpers, S2 grids) ...
_BUFFER_MODULES = frozenset({"SO3_rotation", "SO3_grid", "mappingReduced"})
# ... and these are the names of the remaining buffers, wherever they sit.
_BUFFER_LEAVES = frozenset(
    {
        "l_harmonic",  # CoefficientMappingModule
        "m_harmonic",
        "m_complex",
        "res_size",
        "to_m",
        "m_size",
        "to_grid_mat",  # SO3_Grid
        "from_grid_mat",
        "expand_index",  # SO3_LinearV2, layer norms, separable S2 activation, m-shared radial
        "balance_degree_weight",  # layer_norm_sh / rms_norm_sh
        "offset",  # distance_expansion (GaussianSmearing centres)
    }
)
# Parameters fairchem creates with requires_grad=False: kept in state_dict, skipped by its EMA.
_FROZEN_PARAMETERS = frozenset({"energy_lin_ref"})

# The keyword arguments fairchem 1.x's deprecated ``EquiformerV2`` accepts (its
# ``EquiformerV2Backbone`` also takes ``activation_checkpoint``); exports write only these.
_FAIRCHEM_ARGS = frozenset(
    """use_pbc use_pbc_single regress_forces otf_graph max_neighbors max_radius max_num_elements
    num_layers sphere_channels attn_hidden_channels num_heads attn_alpha_channels
    attn_value_channels ffn_hidden_channels norm_type lmax_list mmax_list grid_resolution
    num_sphere_samples edge_channels use_atom_edge_embedding share_atom_edge_embedding
    use_m_share_rad distance_function num_distance_basis attn_activation use_s2_act_attn
    use_attn_renorm ffn_activation use_gate_act use_grid_mlp use_sep_s2_act alpha_drop
    drop_path_rate proj_drop weight_init enforce_max_neighbors_strictly avg_num_nodes avg_degree
    use_energy_lin_ref load_energy_lin_ref""".split()
)
_DENS_ARGS = frozenset({"use_force_encoding", "use_noise_schedule_sigma_encoding"})

_HEAD_KEY_RE = re.compile(r"^output_heads\.([^.]+)\.(.+)$")
# fairchem inner names of head parameters → eqv2 prefix (inner names are unique across heads)
_INNER_TO_EQV2 = {
    "energy_block.": "energy_block.",
    "scalar_block.": "energy_block.",
    "force_block.": "force_block.",
    "vector_block.": "force_block.",
    "denoising_pos_block.": "force_block.denoising_pos_block.",
    "sphharm_norm.": "stress_head.sphharm_norm.",
    "xedge_layer_norm.": "stress_head.xedge_layer_norm.",
    "block.": "stress_head.block.",
}


# -- key mapping ----------------------------------------------------------------------------------


def strip_module_prefix(key: str) -> str:
    """Remove every leading ``module.`` (added by DataParallel / DistributedDataParallel)."""
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def is_fairchem_buffer(key: str) -> bool:
    """Whether a fairchem EquiformerV2 state-dict key (any layout) names a buffer.

    Rule: a key is a buffer if one of its dotted components is ``SO3_rotation``, ``SO3_grid`` or
    ``mappingReduced`` (modules that only hold constants), or if its last component is one of
    fairchem's buffer names (``l_harmonic``, ``m_harmonic``, ``m_complex``, ``res_size``,
    ``to_m``, ``m_size``, ``to_grid_mat``, ``from_grid_mat``, ``expand_index``,
    ``balance_degree_weight``, ``offset``). No parameter of the model has such a name.
    """
    parts = key.split(".")
    return parts[-1] in _BUFFER_LEAVES or any(p in _BUFFER_MODULES for p in parts[:-1])


def hydra_to_monolithic_key(key: str) -> str:
    """fairchem hydra key → eqv2 name, by renaming prefixes.

    ``backbone.X`` → ``X``; ``output_heads.<head>.energy_block.X`` (or DeNS ``scalar_block``)
    → ``energy_block.X``; ``force_block``/``vector_block`` → ``force_block.X``; DeNS
    ``denoising_pos_block.X`` → ``force_block.denoising_pos_block.X``; the rank-2 head's
    ``sphharm_norm``/``xedge_layer_norm``/``block`` → ``stress_head.…``. Raises ValueError for
    other keys.
    """
    if key.startswith("backbone."):
        return key[len("backbone.") :]
    match = _HEAD_KEY_RE.match(key)
    if match:
        rest = match.group(2)
        for inner, eqv2_prefix in _INNER_TO_EQV2.items():
            if rest.startswith(inner):
                return eqv2_prefix + rest[len(inner) :]
        raise ValueError(
            f"State-dict key {key!r} belongs to fairchem output head {match.group(1)!r}, which "
            "eqv2 does not implement (supported: the energy, direct-force, rank-2 stress and "
            f"DeNS heads, {sorted(HEAD_TYPES)})."
        )
    raise ValueError(
        f"State-dict key {key!r} is not in fairchem's hydra layout (expected a 'backbone.' or "
        "'output_heads.' prefix)."
    )


def monolithic_to_hydra_key(
    key: str,
    *,
    energy_head: str = "energy",
    force_head: str = "forces",
    heads: Mapping[str, ResolvedHead] | None = None,
) -> str:
    """eqv2 name → fairchem hydra key.

    Without ``heads``: ``energy_block.X`` → ``output_heads.<energy_head>.energy_block.X``
    (likewise forces), anything else → ``backbone.X``. With ``heads`` (``{kind:
    ResolvedHead}``, see :func:`eqv2.model.heads.resolve_heads`) each head's keys take its
    fairchem name and inner block names (e.g. DeNS ``scalar_block``, ``denoising_pos_block``).
    """
    if heads is None:
        heads = {
            "energy": ResolvedHead(energy_head, {}, HEAD_TYPES["equiformer_v2_energy_head"]),
            "forces": ResolvedHead(force_head, {}, HEAD_TYPES["equiformer_v2_force_head"]),
        }
    for kind, head in heads.items():
        attribute = ATTRIBUTES[kind] + "."
        if not key.startswith(attribute):
            continue
        rest = key[len(attribute) :]
        # the longest eqv2 inner prefix that matches ("denoising_pos_block." before "")
        pairs = sorted(head.type.fairchem_blocks, key=lambda p: -len(p[1]))
        for fairchem_inner, eqv2_inner in pairs:
            if rest.startswith(eqv2_inner):
                return f"output_heads.{head.name}.{fairchem_inner}{rest[len(eqv2_inner) :]}"
    return f"backbone.{key}"


def detect_layout(keys: Iterable[str]) -> Layout:
    """``"hydra"`` if the (prefix-stripped) keys are ``backbone.*``/``output_heads.*``,
    ``"monolithic"`` if none are; ValueError for a mixture or an empty state dict."""
    keys = [strip_module_prefix(k) for k in keys]
    if not keys:
        raise ValueError("The state dict is empty: no weights to load.")
    hydra = [k.startswith(("backbone.", "output_heads.")) for k in keys]
    if all(hydra):
        return "hydra"
    if not any(hydra):
        return "monolithic"
    odd = [k for k, h in zip(keys, hydra, strict=True) if not h][:3]
    raise ValueError(
        "The state dict mixes fairchem's hydra layout ('backbone.*', 'output_heads.*') with "
        f"monolithic keys (e.g. {odd}); it was probably edited by hand. Use one layout."
    )


def from_fairchem_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], Layout]:
    """Split a fairchem state dict (any layout, any number of ``module.`` prefixes).

    Returns:
        ``(parameters, buffers, layout)``: parameters and buffers both keyed by eqv2's
        (monolithic) names, in the order of the input; ``layout`` is the input's layout.
    """
    layout = detect_layout(state_dict.keys())
    params: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = strip_module_prefix(key)
        if layout == "hydra":
            name = hydra_to_monolithic_key(name)
        target = buffers if is_fairchem_buffer(name) else params
        if name in target:
            raise ValueError(
                f"State-dict keys {key!r} and an earlier key both map to {name!r}: the file has "
                "more than one output head of the same kind, which eqv2 does not support."
            )
        target[name] = value
    return params, buffers, layout


def to_fairchem_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    layout: Layout = "hydra",
    prefix: str = "",
    *,
    energy_head: str = "energy",
    force_head: str = "forces",
    buffers: Mapping[str, torch.Tensor] | None = None,
    heads: Mapping[str, ResolvedHead] | None = None,
) -> dict[str, torch.Tensor]:
    """eqv2 parameter names → fairchem names.

    Args:
        state_dict: eqv2 parameters (monolithic names).
        layout: ``"hydra"`` (fairchem 1.x ``HydraModel``) or ``"monolithic"`` (deprecated
            ``EquiformerV2``, the released OC20 files).
        prefix: prepended to every key, e.g. ``"module."`` as fairchem's trainers save them.
        energy_head, force_head: hydra head names (the keys of the config's ``heads``).
        heads: the model's heads (:func:`eqv2.model.heads.resolve_heads`), for their fairchem
            names and inner block names; default: an energy and a direct force head.
        buffers: optional fairchem buffers to include (monolithic names, e.g.
            :attr:`FairchemCheckpoint.buffers`). fairchem's strict ``load_state_dict`` expects
            its buffers too; without them load with ``strict=False`` (the model then keeps the
            buffers it computed itself, which is what eqv2 does) or set
            ``task.strict_load: false`` in the config.
    """
    if layout not in ("hydra", "monolithic"):
        raise ValueError(f"layout={layout!r}: choose 'hydra' or 'monolithic'.")
    merged: dict[str, torch.Tensor] = dict(state_dict)
    for key, value in (buffers or {}).items():
        merged.setdefault(key, value)
    out: dict[str, torch.Tensor] = {}
    for key, value in merged.items():
        name = (
            monolithic_to_hydra_key(
                key, energy_head=energy_head, force_head=force_head, heads=heads
            )
            if layout == "hydra"
            else key
        )
        out[prefix + name] = value
    return out


# -- validation -----------------------------------------------------------------------------------


class StateDictMismatchError(ValueError):
    """Weights do not fit the model. Attributes list every offending key."""

    def __init__(
        self,
        message: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, torch.Size, torch.Size]],
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def _fmt_shape(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def validate_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    *,
    source: str = "the checkpoint",
    max_listed: int = 40,
) -> None:
    """Check that ``state_dict`` has exactly the ``expected`` keys with the expected shapes.

    Missing, unexpected and misshaped keys are all reported in one
    :class:`StateDictMismatchError` naming each key (with shapes), followed by the likely fix.

    Args:
        state_dict: the weights to load (eqv2 names).
        expected: ``{name: shape}`` of the model, e.g. ``{k: v.shape for k, v in
            model.state_dict().items()}``.
        source: how to name the weights' origin in the message (e.g. the file path).
        max_listed: at most this many keys are spelled out per category.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        (k, torch.Size(expected[k]), torch.Size(state_dict[k].shape))
        for k in expected
        if k in state_dict and torch.Size(state_dict[k].shape) != torch.Size(expected[k])
    ]
    if not (missing or unexpected or mismatched):
        return

    def listing(items: list[str]) -> str:
        shown = "\n".join(f"    {item}" for item in items[:max_listed])
        more = len(items) - max_listed
        return shown + (f"\n    ... and {more} more" if more > 0 else "")

    lines = [f"The weights in {source} do not fit the model:"]
    if missing:
        lines.append(f"  {len(missing)} missing key(s) (the model has them, the weights do not):")
        lines.append(listing([f"{k} {_fmt_shape(expected[k])}" for k in missing]))
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s) (in the weights, not in the model):")
        lines.append(listing([f"{k} {_fmt_shape(state_dict[k].shape)}" for k in unexpected]))
    if mismatched:
        lines.append(f"  {len(mismatched)} key(s) with the wrong shape:")
        lines.append(
            listing(
                [
                    f"{k}: weights {_fmt_shape(got)}, model {_fmt_shape(want)}"
                    for k, want, got in mismatched
                ]
            )
        )
    hints = []
    if any(k.startswith(("module.", "backbone.", "output_heads.")) for k in unexpected):
        hints.append(
            "the weights still use fairchem's key names: read the file with "
            "eqv2.model.fairchem.read_fairchem_checkpoint, which maps them"
        )
    if any(is_fairchem_buffer(k) for k in unexpected):
        hints.append("fairchem buffers are present: drop them (from_fairchem_state_dict does)")
    if mismatched or missing or unexpected:
        hints.append(
            "if the names match but shapes differ, or whole blocks are missing/extra, the model "
            "was built with a different config than the weights were trained with (compare "
            "num_layers, sphere_channels, lmax_list/mmax_list, ffn_hidden_channels, num_heads, "
            "use_grid_mlp, load_energy_lin_ref ... with the checkpoint's config); otherwise the "
            "file is not the checkpoint you meant"
        )
    lines.append("Fix: " + "; ".join(hints) + ".")
    raise StateDictMismatchError("\n".join(lines), missing, unexpected, mismatched)


# -- reading checkpoints --------------------------------------------------------------------------


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
        and obj.get("format") != "eqv2-checkpoint"
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


def _model_kwargs(config: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(backbone kwargs, heads) from a fairchem trainer config or a bare kwargs dict."""
    model = config.get("model")
    if isinstance(model, str):
        name = model
        if name.rsplit(".", 1)[-1] not in _MONOLITHIC_MODELS | _BACKBONE_MODELS:
            raise CheckpointError(
                f"{where}: config['model'] is {name!r}, not an EquiformerV2 model "
                f"(expected one of {sorted(_MONOLITHIC_MODELS)})."
            )
        if "model_attributes" not in config:  # bare kwargs naming their class
            return dict(config), {}
        kwargs = config.get("model_attributes")  # old OCP: model name + model_attributes
        if not isinstance(kwargs, Mapping):
            raise CheckpointError(
                f"{where}: config['model'] is the string {name!r} but config['model_attributes'] "
                "(the model's arguments) is missing."
            )
        return dict(kwargs), {}
    if isinstance(model, Mapping):
        name = str(model.get("name", ""))
        if name == "hydra":
            backbone = model.get("backbone")
            if not isinstance(backbone, Mapping):
                raise CheckpointError(
                    f"{where}: hydra model config has no 'backbone' dict (fine-tuning configs "
                    "that take the backbone from another checkpoint are not supported: load that "
                    "checkpoint instead)."
                )
            bb_name = str(backbone.get("model", "")).rsplit(".", 1)[-1]
            known = _BACKBONE_MODELS | _MONOLITHIC_MODELS | _DENS_BACKBONE_MODELS
            if bb_name not in known:
                raise CheckpointError(
                    f"{where}: the hydra backbone is {backbone.get('model')!r}, not EquiformerV2's "
                    "'equiformer_v2_backbone' or the DeNS 'EqV2DeNSBackbone'."
                )
            kwargs = dict(backbone)
            if bb_name in _DENS_BACKBONE_MODELS:
                kwargs["backbone"] = "dens"
            heads = model.get("heads") or {}
            return kwargs, {k: dict(v) for k, v in heads.items()}
        if name.rsplit(".", 1)[-1] in _MONOLITHIC_MODELS | _BACKBONE_MODELS:
            return {k: v for k, v in model.items() if k != "name"}, {}
        raise CheckpointError(
            f"{where}: config['model']['name'] is {name!r}, not an EquiformerV2 model "
            "('equiformer_v2' or 'hydra' with an 'equiformer_v2_backbone')."
        )
    if model is None and "backbone" not in config:  # bare kwargs
        return dict(config), {}
    if model is None and isinstance(config.get("backbone"), Mapping):
        return _model_kwargs({"model": {"name": "hydra", **config}}, where)
    raise CheckpointError(f"{where}: cannot find the model arguments in the config.")


def _make_config(kwargs: Mapping[str, Any], where: str) -> EquiformerV2Config:
    try:
        return EquiformerV2Config.from_dict(kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid EquiformerV2 config: {exc}") from exc


def _check_heads(heads: Mapping[str, Any], where: str) -> None:
    """Refuse heads eqv2 does not implement, naming them and the supported ones."""
    kinds: dict[str, str] = {}
    for name, spec in heads.items():
        module = spec.get("module") if isinstance(spec, Mapping) else None
        try:
            kind = head_type(module, name).kind
        except ValueError as exc:
            raise CheckpointError(f"{where}: unsupported {exc}") from exc
        if kind in kinds:
            raise CheckpointError(
                f"{where}: heads {kinds[kind]!r} and {name!r} are both {kind} heads; eqv2 "
                "supports one head of each kind."
            )
        kinds[kind] = name


def _is_default_layout(heads: Mapping[str, Any]) -> bool:
    """Whether ``heads`` is the OC20 layout that ``config.heads = None`` stands for."""
    defaults = {name: head_type(spec["module"]) for name, spec in _DEFAULT_HEADS.items()}
    return all(
        name in defaults
        and head_type(spec.get("module"), name) is defaults[name]
        and set(spec) == {"module"}
        for name, spec in heads.items()
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


def _ema_weights(
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
    for name, value in _named_entries(file_state_dict, layout):
        if is_fairchem_buffer(name) or name in _FROZEN_PARAMETERS:
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
                f"{where}: ema['shadow_params'][{i}] has shape {_fmt_shape(tensor.shape)} but "
                f"parameter {name!r} (trainable parameter number {i}) has "
                f"{_fmt_shape(param.shape)}: the EMA does not follow the state dict's parameter "
                "order. Load with use_ema=False."
            )
        out[name] = tensor
    return out


def _named_entries(
    file_state_dict: Mapping[str, torch.Tensor], layout: Layout
) -> list[tuple[str, torch.Tensor]]:
    """(eqv2 name, tensor) for every entry of a fairchem state dict, in file order."""
    out = []
    for key, value in file_state_dict.items():
        name = strip_module_prefix(key)
        out.append((hydra_to_monolithic_key(name) if layout == "hydra" else name, value))
    return out


def read_fairchem_checkpoint(
    obj_or_path: PathLike | Mapping[str, Any],
    *,
    use_ema: bool = False,
    config: EquiformerV2Config | Mapping[str, Any] | None = None,
    trust_pickle: bool = False,
) -> FairchemCheckpoint:
    """Read a fairchem/OCP EquiformerV2 checkpoint (file or loaded dict).

    Accepts training-state files (``checkpoint.pt``: state_dict, EMA, optimizer ...),
    ``best_checkpoint.pt``-style files (no EMA), and bare fairchem state dicts (monolithic or
    hydra keys, with or without ``module.`` prefixes and buffers), for which ``config`` is
    required.

    Args:
        obj_or_path: a path, a loaded checkpoint dict, or a bare state dict.
        use_ema: use the EMA shadow weights instead of ``state_dict`` (fairchem 1.10's calculator
            does not; OCP 0.x's did). Raises if the file has no EMA.
        config: the model config (EquiformerV2Config, backbone kwargs like
            ``eqv2_small/config.json``'s ``backbone_config``, or a fairchem model config).
            Required for bare state dicts; overrides the file's config otherwise.
        trust_pickle: passed to :func:`safe_load` when a path is given.

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
    where = repr(str(path)) if path is not None else "the checkpoint"

    if is_fairchem_checkpoint(obj):
        file_sd = obj["state_dict"]
        fc_config = dict(obj["config"])
        if config is None:
            kwargs, heads = _model_kwargs(fc_config, where)
        else:  # the caller's config wins; the file's may even be unreadable
            try:
                kwargs, heads = _model_kwargs(fc_config, where)
            except CheckpointError:
                kwargs, heads = {}, {}
        normalizers = _read_normalizers(obj.get("normalizers"), where)
        element_refs = _read_element_references(obj.get("elementrefs"), where)
        ema = obj.get("ema")
    elif _is_bare_state_dict(obj):
        if config is None:
            raise CheckpointError(
                f"{where} is a bare state dict without a model config: pass config= (the "
                "EquiformerV2 backbone arguments, e.g. the 'model_attributes' of the training "
                "config)."
            )
        file_sd, fc_config, kwargs, heads = obj, {}, {}, {}
        normalizers, element_refs, ema = None, None, None
    elif isinstance(obj, Mapping) and obj.get("format") == "eqv2-checkpoint":
        raise CheckpointError(
            f"{where} is an eqv2 checkpoint, not a fairchem one: use "
            "eqv2.model.checkpoint.load_checkpoint."
        )
    else:
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{where} is not a fairchem checkpoint (expected a dict with 'state_dict' and "
            f"'config', or a bare state dict of tensors); found {keys}."
        )

    if isinstance(config, EquiformerV2Config):
        model_config = config
    elif config is not None:
        cfg_kwargs, cfg_heads = _model_kwargs(config, "config=")
        model_config = _make_config(cfg_kwargs, "config=")
        heads = cfg_heads or heads
    else:
        model_config = _make_config(kwargs, where)

    try:
        params, buffers, layout = from_fairchem_state_dict(file_sd)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc

    has_force = any(k.startswith("force_block.") for k in params)
    has_energy = any(k.startswith("energy_block.") for k in params)
    if heads:
        _check_heads(heads, where)
        if model_config.heads is None and not _is_default_layout(heads):
            try:
                model_config = dataclasses.replace(model_config, heads=dict(heads))
            except ValueError as exc:
                raise CheckpointError(f"{where}: invalid EquiformerV2 config: {exc}") from exc
    else:
        heads = {
            name: dict(spec)
            for name, spec in _DEFAULT_HEADS.items()
            if (name == "energy" and has_energy) or (name == "forces" and has_force)
        }

    if use_ema:
        params = _ema_weights(ema, file_sd, layout, where) | {
            k: v for k, v in params.items() if k in _FROZEN_PARAMETERS
        }
        # keep the state dict's key order
        params = {k: params[k] for k, _ in _named_entries(file_sd, layout) if k in params}

    return FairchemCheckpoint(
        config=model_config,
        state_dict=params,
        normalizers=normalizers,
        element_references=element_refs,
        layout=layout,
        used_ema=use_ema,
        heads=heads,
        buffers=buffers,
        fairchem_config=fc_config,
        path=path,
    )


# -- export ---------------------------------------------------------------------------------------


def to_fairchem_checkpoint(
    path: PathLike | None = None,
    *,
    state_dict: Mapping[str, torch.Tensor],
    config: EquiformerV2Config | Mapping[str, Any],
    normalizers: Mapping[str, Mapping[str, float]] | None = None,
    element_references: torch.Tensor | None = None,
    buffers: Mapping[str, torch.Tensor] | None = None,
    layout: Layout = "hydra",
) -> dict[str, Any]:
    """Build (and optionally write, atomically) a checkpoint that fairchem 1.x can load.

    The result has fairchem 1.x's layout: ``config`` with ``model = {"name": "hydra",
    "backbone": {..., "model": "equiformer_v2_backbone"}, "heads": {...}}`` (or ``{"name":
    "equiformer_v2", ...}`` for ``layout="monolithic"``), ``outputs``, ``loss_functions``,
    ``evaluation_metrics``, ``optim``, ``dataset``; ``state_dict`` with a ``module.`` prefix;
    ``normalizers`` as ``{target: {"mean", "rmsd"}}``; ``elementrefs`` when given. Only
    fairchem's own model arguments are written (eqv2 extensions such as ``direct_forces`` are
    dropped), and without ``force_block`` weights only the energy head is declared.

    fairchem's trainer loads state dicts strictly, including its buffers. When ``buffers`` is not
    given (eqv2 does not store fairchem's buffers), the config sets ``task.strict_load: false``
    so fairchem keeps the buffers it computes itself; pass :attr:`FairchemCheckpoint.buffers`
    to write a file that also strict-loads. Note that ``OCPCalculator`` needs
    ``trainer="equiformerv2_forces"`` (or ``"ocp"``) for 1.x-style files.

    Only tensors and plain values are written, so the file loads with ``weights_only=True``.
    """
    cfg = config if isinstance(config, EquiformerV2Config) else EquiformerV2Config.from_dict(config)
    allowed = _FAIRCHEM_ARGS | ({"activation_checkpoint"} if layout == "hydra" else set())
    dens = cfg.backbone == "dens"
    if dens:
        allowed = allowed | _DENS_ARGS
    kwargs = {k: v for k, v in cfg.ignored.items() if k in allowed}
    kwargs.update({k: v for k, v in cfg.to_dict().items() if k in allowed})
    kwargs.setdefault("use_pbc", True)
    kwargs.setdefault("otf_graph", True)
    has_forces = any(k.startswith("force_block.") for k in state_dict)
    kwargs["regress_forces"] = has_forces
    resolved = resolve_heads(cfg) if cfg.heads is not None else None
    if resolved is not None:
        heads = {head.name: dict(head.spec) for head in resolved.values()}
    else:
        heads = {
            name: dict(spec)
            for name, spec in _DEFAULT_HEADS.items()
            if name == "energy" or (name == "forces" and has_forces)
        }
    stress_head = resolved.get("stress") if resolved is not None else None
    if layout == "monolithic" and (dens or cfg.heads is not None):
        raise ValueError(
            "layout='monolithic' holds only the OC20 energy and force heads on the plain "
            "backbone; export this model (heads or DeNS backbone) with layout='hydra'."
        )
    if layout == "hydra":
        model_cfg: dict[str, Any] = {
            "name": "hydra",
            "backbone": {
                **kwargs,
                "model": _DENS_BACKBONE_PATH if dens else "equiformer_v2_backbone",
            },
            "heads": heads,
            "otf_graph": True,
            # fairchem's trainer finds decomposed stress parts only in a flat output dict
            "pass_through_head_outputs": stress_head is not None,
        }
    elif layout == "monolithic":
        model_cfg = {"name": "equiformer_v2", **kwargs}
    else:
        raise ValueError(f"layout={layout!r}: choose 'hydra' or 'monolithic'.")
    outputs: dict[str, Any] = {"energy": {"level": "system", "property": "energy"}}
    losses: list[dict[str, Any]] = [{"energy": {"fn": "mae", "coefficient": 1}}]
    metrics: dict[str, list[str]] = {"energy": ["mae"]}
    if has_forces:
        outputs["forces"] = {
            "level": "atom",
            "property": "forces",
            "train_on_free_atoms": True,
            "eval_on_free_atoms": True,
        }
        losses.append({"forces": {"fn": "l2mae", "coefficient": 1}})
        metrics["forces"] = ["mae"]
    if stress_head is not None:
        name = stress_head.spec.get("output_name", "stress")
        outputs[name] = {"level": "system", "property": name}
        if stress_head.spec.get("decompose", False):
            parts = {f"{name}_isotropic": 0, f"{name}_anisotropic": 2}
            outputs[name]["decomposition"] = {k: {"irrep_dim": d} for k, d in parts.items()}
            losses += [{k: {"fn": "mae", "coefficient": 1}} for k in parts]
            metrics.update({k: ["mae"] for k in parts})
        else:
            losses.append({name: {"fn": "mae", "coefficient": 1}})
        metrics[name] = ["mae"]

    fc_state = to_fairchem_state_dict(
        {k: v.detach().cpu() for k, v in state_dict.items()},
        layout=layout,
        prefix="module.",
        buffers=buffers,
        heads=resolved,
    )
    fc_normalizers: dict[str, dict[str, torch.Tensor]] = {}
    for target, stats in (normalizers or {}).items():
        fc_normalizers[target] = {
            "mean": torch.tensor(float(stats["mean"])),
            "rmsd": torch.tensor(float(stats.get("std", stats.get("rmsd", 1.0)))),
        }
    checkpoint: dict[str, Any] = {
        "state_dict": fc_state,
        "normalizers": fc_normalizers,
        "config": {
            "trainer": "equiformerv2_forces",
            "task": {} if buffers else {"strict_load": False},
            "model": model_cfg,
            "outputs": outputs,
            "loss_functions": losses,
            "evaluation_metrics": {"primary_metric": "energy_mae", "metrics": metrics},
            "optim": {"batch_size": 1, "eval_batch_size": 1, "num_workers": 0},
            "dataset": {"format": "ase_db", "src": ""},
            "slurm": {},
            "amp": False,
            "cmd": {"version": "eqv2-export"},
        },
        "amp": None,
        "epoch": 0,
        "step": 0,
        "ema": None,
        "val_metrics": None,
    }
    if element_references is not None:
        checkpoint["elementrefs"] = {
            "energy": {"element_references": torch.as_tensor(element_references).detach().cpu()}
        }
    if path is not None:
        atomic_save(checkpoint, path)
    return checkpoint
