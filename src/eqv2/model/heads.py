"""Which output heads a model has: fairchem head names → eqv2 head modules, in one place.

A config's ``heads`` (fairchem's ``model.heads``: ``{name: {"module": ..., **kwargs}}``) is
resolved here. ``module`` may be a registry name (``rank2_symmetric_head``) or a class path
(``fairchem.core.models.equiformer_v2.equiformer_v2_dens.DeNSRank2Head``); only its last
dotted component is looked up. Every head has a *kind* (energy, forces, stress, denoising); a
model has at most one head of each kind, stored under a fixed attribute (``energy_block``,
``force_block``, ``stress_head``, ``denoising_head``) whose parameter names are fairchem's
inner names, renamed by prefix only (:attr:`HeadType.fairchem_blocks`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from eqv2.model.config import EquiformerV2Config
from eqv2.nn.heads import DeNSForceHead, EnergyHead, ForceHead, PositionDenoisingHead, Rank2Head

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_HEADS",
    "HEAD_TYPES",
    "HeadType",
    "ResolvedHead",
    "head_type",
    "resolve_heads",
]

#: eqv2 attribute holding the head of each kind (fixed: eqv2 checkpoints use these names).
ATTRIBUTES = {
    "energy": "energy_block",
    "forces": "force_block",
    "stress": "stress_head",
    "denoising": "denoising_head",
}

DEFAULT_HEADS: dict[str, dict[str, Any]] = {
    "energy": {"module": "equiformer_v2_energy_head"},
    "forces": {"module": "equiformer_v2_force_head"},
}


@dataclass(frozen=True)
class HeadType:
    """How one fairchem head class maps onto eqv2.

    Attributes:
        kind: ``"energy"``, ``"forces"``, ``"stress"`` or ``"denoising"``.
        build: ``(config, head kwargs, edge_channels) -> module``.
        options: the head keyword arguments accepted (others are refused).
        fairchem_blocks: ``(fairchem inner prefix, eqv2 inner prefix)`` pairs: the head's
            fairchem key ``output_heads.<name>.<fc><rest>`` is eqv2's ``<attribute>.<eq><rest>``.
    """

    kind: str
    build: Callable[[EquiformerV2Config, Mapping[str, Any], list[int]], nn.Module]
    options: frozenset[str]
    fairchem_blocks: tuple[tuple[str, str], ...]


def ffn_options(c: EquiformerV2Config) -> dict[str, Any]:
    """Keyword arguments of :class:`eqv2.nn.feed_forward.FeedForward` for this config."""
    return {"activation": c.feed_forward_activation}


def attention_args(c: EquiformerV2Config, edge_channels: list[int], output_channels: int) -> tuple:
    """Positional arguments of :class:`eqv2.nn.attention.GraphAttention` for this config."""
    return (
        c.sphere_channels,
        c.attn_hidden_channels,
        c.num_heads,
        c.attn_alpha_channels,
        c.attn_value_channels,
        output_channels,
        c.lmax,
        c.mmax,
        c.max_num_elements,
        edge_channels,
    )


def attention_options(c: EquiformerV2Config) -> dict[str, Any]:
    """Keyword arguments of :class:`eqv2.nn.attention.GraphAttention` for this config."""
    return {
        "use_atom_edge_embedding": c.use_atom_edge_embedding and not c.share_atom_edge_embedding,
        "use_m_share_rad": c.use_m_share_rad,
        "use_attn_renorm": c.use_attn_renorm,
        "activation": c.attention_activation,
    }


def _energy(c: EquiformerV2Config, spec: Mapping[str, Any], _: list[int]) -> nn.Module:
    return EnergyHead(
        c.sphere_channels,
        c.ffn_hidden_channels,
        c.lmax,
        c.avg_num_nodes,
        reduce=spec.get("reduce", "sum"),
        **ffn_options(c),
    )


def _forces(cls: type[ForceHead]):
    def build(c: EquiformerV2Config, spec: Mapping[str, Any], edge_channels: list[int]):
        return cls(*attention_args(c, edge_channels, 1), alpha_drop=0.0, **attention_options(c))

    return build


def _rank2(c: EquiformerV2Config, spec: Mapping[str, Any], _: list[int]) -> nn.Module:
    kwargs = {k: v for k, v in spec.items() if k not in ("module", "use_denoising")}
    kwargs.pop("default_norm_type", None)  # the backbone always has a norm_type
    return Rank2Head(c.sphere_channels, c.lmax, c.norm_type, **kwargs)


_ENERGY = HeadType("energy", _energy, frozenset({"reduce"}), (("energy_block.", ""),))
_DENS_ENERGY = HeadType(
    "energy", _energy, frozenset({"reduce", "use_denoising"}), (("scalar_block.", ""),)
)
_FORCES = HeadType("forces", _forces(ForceHead), frozenset(), (("force_block.", ""),))
_DENS_FORCES = HeadType(
    "forces",
    _forces(DeNSForceHead),
    frozenset(),
    (("vector_block.", ""), ("denoising_pos_block.", "denoising_pos_block.")),
)
_RANK2_OPTIONS = frozenset(
    {
        "output_name",
        "decompose",
        "edge_level_mlp",
        "num_mlp_layers",
        "use_source_target_embedding",
        "extensive",
        "avg_num_nodes",
        "default_norm_type",
    }
)
_STRESS = HeadType("stress", _rank2, _RANK2_OPTIONS, (("", ""),))
_DENS_STRESS = HeadType("stress", _rank2, _RANK2_OPTIONS | {"use_denoising"}, (("", ""),))
#: Noisy Nodes (eqv2's own head, no fairchem counterpart)
_DENOISING = HeadType(
    "denoising", _forces(PositionDenoisingHead), frozenset(), (("denoising_block.", ""),)
)

#: fairchem head names (registry names and class names) → how eqv2 builds them.
HEAD_TYPES: dict[str, HeadType] = {
    "equiformer_v2_energy_head": _ENERGY,
    "EquiformerV2EnergyHead": _ENERGY,
    "equiformerV2_scalar_head": _ENERGY,
    "eqV2_DeNS_scalar_head": _DENS_ENERGY,
    "DeNSScalarHead": _DENS_ENERGY,
    "equiformer_v2_force_head": _FORCES,
    "EquiformerV2ForceHead": _FORCES,
    "equiformerV2_vector_head": _FORCES,
    "eqV2_DeNS_vector_head": _DENS_FORCES,
    "DeNSVectorHead": _DENS_FORCES,
    "rank2_symmetric_head": _STRESS,
    "Rank2SymmetricTensorHead": _STRESS,
    "dens_rank2_symmetric_head": _DENS_STRESS,
    "DeNSRank2Head": _DENS_STRESS,
    "position_denoising_head": _DENOISING,
    "PositionDenoisingHead": _DENOISING,
}


def head_type(module: Any, name: str = "?") -> HeadType:
    """The :class:`HeadType` of a head's ``module`` entry; ValueError naming the supported ones."""
    key = str(module).rsplit(".", 1)[-1]
    if key not in HEAD_TYPES:
        raise ValueError(
            f"output head {name!r} has module {module!r}, which eqv2 does not implement; "
            f"supported heads: {sorted(HEAD_TYPES)}."
        )
    return HEAD_TYPES[key]


@dataclass(frozen=True)
class ResolvedHead:
    """One head of a model: its fairchem name, its config entry and its type."""

    name: str
    spec: dict[str, Any]
    type: HeadType

    @property
    def attribute(self) -> str:
        return ATTRIBUTES[self.type.kind]


def resolve_heads(config: EquiformerV2Config) -> dict[str, ResolvedHead]:
    """``{kind: ResolvedHead}`` for a config (energy first); ValueError for bad head configs."""
    specs = config.heads
    if specs is None:
        specs = {k: v for k, v in DEFAULT_HEADS.items() if k == "energy" or config.direct_forces}
    out: dict[str, ResolvedHead] = {}
    for name, spec in specs.items():
        if not isinstance(spec, Mapping) or "module" not in spec:
            raise ValueError(f"heads[{name!r}] = {spec!r}: expected a dict with a 'module' name.")
        htype = head_type(spec["module"], name)
        unknown = sorted(set(spec) - {"module"} - htype.options)
        if unknown:
            raise ValueError(
                f"heads[{name!r}] ({spec['module']}): unknown option(s) {unknown}; this head "
                f"accepts {sorted(htype.options)}."
            )
        if htype.kind in out:
            raise ValueError(
                f"heads {out[htype.kind].name!r} and {name!r} are both {htype.kind} heads; eqv2 "
                "supports one head of each kind."
            )
        if htype.kind == "forces" and not config.direct_forces:
            raise ValueError(
                f"heads[{name!r}] is a direct force head but direct_forces=False (forces as "
                "-dE/dx): remove the head or set direct_forces=True."
            )
        out[htype.kind] = ResolvedHead(str(name), dict(spec), htype)
    if "energy" not in out:
        raise ValueError(
            f"heads {sorted(specs)} have no energy head; eqv2 models always predict the energy "
            "(add {'module': 'equiformer_v2_energy_head'})."
        )
    return {kind: out[kind] for kind in ATTRIBUTES if kind in out}
