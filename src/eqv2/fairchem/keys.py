"""fairchem ↔ eqv2 parameter names: prefixes, hydra/monolithic layouts, buffers.

eqv2 names its parameters exactly like fairchem's deprecated monolithic ``EquiformerV2`` (the
layout of the released OC20 checkpoints): ``sphere_embedding.weight``, ``blocks.0.ga.…``,
``energy_block.…``, ``force_block.…``. fairchem 1.x's ``HydraModel`` uses the same names under
``backbone.`` and ``output_heads.<head>.``; training wrappers add leading ``module.`` prefixes.
Mapping between them is renaming prefixes only; fairchem's buffers (constants eqv2 recomputes
from the config) are recognised by name and set apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

import torch

from eqv2.model.heads import ATTRIBUTES, HEAD_TYPES, ResolvedHead

__all__ = [
    "Layout",
    "detect_layout",
    "eqv2_named_entries",
    "from_fairchem_state_dict",
    "hydra_to_monolithic_key",
    "is_fairchem_buffer",
    "monolithic_to_hydra_key",
    "strip_module_prefix",
    "to_fairchem_state_dict",
]

Layout = Literal["monolithic", "hydra"]


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


def eqv2_named_entries(
    file_state_dict: Mapping[str, torch.Tensor], layout: Layout
) -> list[tuple[str, torch.Tensor]]:
    """(eqv2 name, tensor) for every entry of a fairchem state dict (buffers too), in file
    order."""
    out = []
    for key, value in file_state_dict.items():
        name = strip_module_prefix(key)
        out.append((hydra_to_monolithic_key(name) if layout == "hydra" else name, value))
    return out
