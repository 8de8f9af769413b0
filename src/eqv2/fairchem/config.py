"""fairchem model configs → :class:`EquiformerV2Config` and heads, with validation.

fairchem spells a model's arguments three ways: an old string name plus
``config["model_attributes"]`` (OCP 0.x), a ``{"name": "equiformer_v2", …kwargs}`` dict, or a
``{"name": "hydra", "backbone": …, "heads": …}`` dict (fairchem 1.x). :func:`model_kwargs`
reads all three (and bare kwargs); :func:`resolve_model` turns them into eqv2's config and head
list. Unsupported models and heads are refused, naming them and what is supported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from eqv2.model.checkpoint import CheckpointError
from eqv2.model.config import EquiformerV2Config
from eqv2.model.heads import DEFAULT_HEADS, head_type

__all__ = [
    "DENS_ARGS",
    "DENS_BACKBONE_PATH",
    "ENERGY_HEAD_MODULES",
    "FAIRCHEM_ARGS",
    "FORCE_HEAD_MODULES",
    "check_heads",
    "default_heads",
    "make_config",
    "model_kwargs",
    "resolve_model",
]

#: fairchem head modules whose parameters live under ``energy_block.`` / ``force_block.``.
ENERGY_HEAD_MODULES = frozenset({"equiformer_v2_energy_head", "equiformerV2_scalar_head"})
FORCE_HEAD_MODULES = frozenset({"equiformer_v2_force_head", "equiformerV2_vector_head"})
_BACKBONE_MODELS = frozenset({"equiformer_v2_backbone", "EquiformerV2Backbone"})
_DENS_BACKBONE_MODELS = frozenset({"equiformer_v2_dens_backbone", "EqV2DeNSBackbone"})
_MONOLITHIC_MODELS = frozenset({"equiformer_v2", "EquiformerV2"})
#: written to exported files: fairchem 1.x resolves class paths without a registry entry
DENS_BACKBONE_PATH = "fairchem.core.models.equiformer_v2.equiformer_v2_dens.EqV2DeNSBackbone"

# The keyword arguments fairchem 1.x's deprecated ``EquiformerV2`` accepts (its
# ``EquiformerV2Backbone`` also takes ``activation_checkpoint``); exports write only these.
FAIRCHEM_ARGS = frozenset(
    """use_pbc use_pbc_single regress_forces otf_graph max_neighbors max_radius max_num_elements
    num_layers sphere_channels attn_hidden_channels num_heads attn_alpha_channels
    attn_value_channels ffn_hidden_channels norm_type lmax_list mmax_list grid_resolution
    num_sphere_samples edge_channels use_atom_edge_embedding share_atom_edge_embedding
    use_m_share_rad distance_function num_distance_basis attn_activation use_s2_act_attn
    use_attn_renorm ffn_activation use_gate_act use_grid_mlp use_sep_s2_act alpha_drop
    drop_path_rate proj_drop weight_init enforce_max_neighbors_strictly avg_num_nodes avg_degree
    use_energy_lin_ref load_energy_lin_ref""".split()
)
DENS_ARGS = frozenset({"use_force_encoding", "use_noise_schedule_sigma_encoding"})


def model_kwargs(config: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(backbone kwargs, heads) from a fairchem trainer config or a bare kwargs dict.

    ``where`` names the origin in error messages (e.g. the file path). Raises
    :class:`CheckpointError` when the config is not an EquiformerV2 model's.
    """
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
        return model_kwargs({"model": {"name": "hydra", **config}}, where)
    raise CheckpointError(f"{where}: cannot find the model arguments in the config.")


def make_config(kwargs: Mapping[str, Any], where: str) -> EquiformerV2Config:
    """:class:`EquiformerV2Config` from backbone kwargs; a bad key is a :class:`CheckpointError`
    naming ``where``."""
    try:
        return EquiformerV2Config.from_dict(kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid EquiformerV2 config: {exc}") from exc


def check_heads(heads: Mapping[str, Any], where: str) -> None:
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
    defaults = {name: head_type(spec["module"]) for name, spec in DEFAULT_HEADS.items()}
    return all(
        name in defaults
        and head_type(spec.get("module"), name) is defaults[name]
        and set(spec) == {"module"}
        for name, spec in heads.items()
    )


def resolve_model(
    file_config: Mapping[str, Any],
    config: EquiformerV2Config | Mapping[str, Any] | None,
    where: str,
) -> tuple[EquiformerV2Config, dict[str, Any]]:
    """The model config and declared fairchem heads of a checkpoint.

    Args:
        file_config: the file's ``config`` entry (``{}`` for a bare state dict).
        config: the caller's config; it wins over the file's, which may then even be unreadable.
        where: names the origin in error messages.

    Returns:
        ``(model config, {head name: head spec})``; heads are ``{}`` when none are declared
        (monolithic files: see :func:`default_heads`). Non-default heads are written into the
        config's ``heads`` unless the caller's config already sets them.
    """
    if config is None:
        kwargs, heads = model_kwargs(file_config, where) if file_config else ({}, {})
        model_config = make_config(kwargs, where)
    else:
        try:
            _, heads = model_kwargs(file_config, where) if file_config else ({}, {})
        except CheckpointError:
            heads = {}
        if isinstance(config, EquiformerV2Config):
            model_config = config
        else:
            cfg_kwargs, cfg_heads = model_kwargs(config, "config=")
            model_config = make_config(cfg_kwargs, "config=")
            heads = cfg_heads or heads
    if heads:
        check_heads(heads, where)
        if model_config.heads is None and not _is_default_layout(heads):
            try:
                model_config = dataclasses.replace(model_config, heads=dict(heads))
            except ValueError as exc:
                raise CheckpointError(f"{where}: invalid EquiformerV2 config: {exc}") from exc
    return model_config, heads


def default_heads(weight_names: Iterable[str]) -> dict[str, Any]:
    """The OC20 heads a file that declares none has: an energy and/or a direct-force head,
    where its (eqv2-named) weights include ``energy_block.`` / ``force_block.`` entries."""
    names = list(weight_names)
    present = {
        "energy": any(k.startswith("energy_block.") for k in names),
        "forces": any(k.startswith("force_block.") for k in names),
    }
    return {name: dict(spec) for name, spec in DEFAULT_HEADS.items() if present[name]}
