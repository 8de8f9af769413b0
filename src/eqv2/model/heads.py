"""Which output heads a model has: fairchem head names → eqv2 head modules, in one place.

A config's ``heads`` (fairchem's ``model.heads``: ``{name: {"module": ..., **kwargs}}``) is
resolved here. ``module`` may be a registry name (``rank2_symmetric_head``) or a class path
(``fairchem.core.models.equiformer_v2.equiformer_v2_dens.DeNSRank2Head``); only its last
dotted component is looked up. Every head has a *kind* (energy, forces, stress, denoising,
property, node_vector); a model has at most one energy, forces, stress and denoising head,
stored under a fixed attribute (``energy_block``, ``force_block``, ``stress_head``,
``denoising_head``) whose parameter names are fairchem's inner names, renamed by prefix only
(:attr:`HeadType.fairchem_blocks`).

Property heads are eqv2's own: any number of them, one per named target, stored in
``property_heads.<name>``; each predicts the output of its own name. A ``scalar_head``
predicts a per-structure scalar, reduced over atoms by ``reduce`` (``sum`` for an extensive
target, ``mean`` for an intensive one), and may declare the ``unit`` its target is in. A
``vector_head`` predicts an equivariant vector per atom (one more attention block read at
l=1, like the direct force head; e.g. the IS2RS displacement to the relaxed structure). A
model with property heads needs no energy head (a QM9 gap model has none).
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
    "NAMED_KINDS",
    "PROPERTY_HEAD",
    "VECTOR_HEAD",
    "RESERVED_OUTPUTS",
    "head_type",
    "property_head_spec",
    "resolve_heads",
    "resolve_property_heads",
]

#: eqv2 attribute holding the head of each kind (fixed: eqv2 checkpoints use these names).
ATTRIBUTES = {
    "energy": "energy_block",
    "forces": "force_block",
    "stress": "stress_head",
    "denoising": "denoising_head",
}

#: The registry name of the per-structure property head (one per named target).
PROPERTY_HEAD = "scalar_head"
#: The registry name of the per-atom vector head (one per named per-atom vector target).
VECTOR_HEAD = "vector_head"
#: Head kinds of which a model may have any number (keyed by their output name).
NAMED_KINDS = ("property", "node_vector")
#: Output names a property head may not take (the fixed outputs of the other heads).
RESERVED_OUTPUTS = ("energy", "forces", "stress", "stress_isotropic", "stress_anisotropic")

DEFAULT_HEADS: dict[str, dict[str, Any]] = {
    "energy": {"module": "equiformer_v2_energy_head"},
    "forces": {"module": "equiformer_v2_force_head"},
}


@dataclass(frozen=True)
class HeadType:
    """How one fairchem head class maps onto eqv2.

    Attributes:
        kind: ``"energy"``, ``"forces"``, ``"stress"``, ``"denoising"``, ``"property"``
            (per-structure scalar) or ``"node_vector"`` (per-atom vector).
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
    """The energy head, or a per-structure scalar head when the caller gives the spec an
    ``output_name`` (a property head's name)."""
    return EnergyHead(
        c.sphere_channels,
        c.ffn_hidden_channels,
        c.lmax,
        c.avg_num_nodes,
        reduce=spec.get("reduce", "sum"),
        output_name=spec.get("output_name", "energy"),
        **ffn_options(c),
    )


def _vector(c: EquiformerV2Config, spec: Mapping[str, Any], edge_channels: list[int]):
    """A per-atom vector head named after its target (an attention block read at l=1)."""
    return ForceHead(
        *attention_args(c, edge_channels, 1),
        alpha_drop=0.0,
        output_name=spec["output_name"],
        **attention_options(c),
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
_PROPERTY = HeadType("property", _energy, frozenset({"reduce", "unit"}), ())
_VECTOR = HeadType("node_vector", _vector, frozenset({"unit"}), ())
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
    PROPERTY_HEAD: _PROPERTY,
    VECTOR_HEAD: _VECTOR,
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


def _resolve_all(config: EquiformerV2Config) -> list[ResolvedHead]:
    """Every head of a config, checked (options, duplicates, force-head consistency)."""
    specs = config.heads
    if specs is None:
        specs = {k: v for k, v in DEFAULT_HEADS.items() if k == "energy" or config.direct_forces}
    out: list[ResolvedHead] = []
    seen: dict[str, str] = {}
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
        if htype.kind in NAMED_KINDS:
            if name in RESERVED_OUTPUTS:
                raise ValueError(
                    f"heads[{name!r}] is a {spec['module']} named like a fixed output; name it "
                    f"after its target (any name but {RESERVED_OUTPUTS})."
                )
            if spec.get("reduce", "sum") not in ("sum", "mean"):
                raise ValueError(
                    f"heads[{name!r}]: reduce={spec['reduce']!r}; choose 'sum' (extensive "
                    "target) or 'mean' (intensive target)."
                )
        elif htype.kind in seen:
            raise ValueError(
                f"heads {seen[htype.kind]!r} and {name!r} are both {htype.kind} heads; eqv2 "
                "supports one head of each kind."
            )
        if htype.kind == "forces" and not config.direct_forces:
            raise ValueError(
                f"heads[{name!r}] is a direct force head but direct_forces=False (forces as "
                "-dE/dx): remove the head or set direct_forces=True."
            )
        seen.setdefault(htype.kind, str(name))
        out.append(ResolvedHead(str(name), dict(spec), htype))
    if "energy" not in seen and "property" not in seen:
        raise ValueError(
            f"heads {sorted(specs)} have no energy head and no property head; add "
            "{'module': 'equiformer_v2_energy_head'} or a {'module': 'scalar_head'} per target."
        )
    if "energy" not in seen and ("forces" in seen or "stress" in seen):
        raise ValueError(
            f"heads {sorted(specs)}: force and stress heads come with an energy head; add "
            "{'module': 'equiformer_v2_energy_head'}."
        )
    return out


def resolve_heads(config: EquiformerV2Config) -> dict[str, ResolvedHead]:
    """``{kind: ResolvedHead}`` of the energy, forces, stress and denoising heads (energy
    first, when the model has one); ValueError for bad head configs. Property heads:
    `resolve_property_heads`."""
    out = {h.type.kind: h for h in _resolve_all(config) if h.type.kind not in NAMED_KINDS}
    return {kind: out[kind] for kind in ATTRIBUTES if kind in out}


def resolve_property_heads(config: EquiformerV2Config) -> dict[str, ResolvedHead]:
    """``{output name: ResolvedHead}`` of the config's property heads (scalar and vector), in
    config order."""
    return {h.name: h for h in _resolve_all(config) if h.type.kind in NAMED_KINDS}


def property_head_spec(
    extensive: bool, unit: str | None = None, per_atom_vector: bool = False
) -> dict[str, Any]:
    """The ``heads`` entry of a property head for a target: a per-atom vector head, or a
    scalar head (sum readout if extensive)."""
    spec: dict[str, Any] = {"module": PROPERTY_HEAD, "reduce": "sum" if extensive else "mean"}
    if per_atom_vector:
        spec = {"module": VECTOR_HEAD}
    if unit is not None:
        spec["unit"] = unit
    return spec
