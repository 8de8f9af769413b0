"""The EquiformerV2 hyper-parameters, with the reference implementation's argument names.

`EquiformerV2Config` accepts exactly the keyword arguments of fairchem's
`EquiformerV2Backbone` (and the deprecated monolithic `EquiformerV2`), so a config read from a
fairchem checkpoint or YAML file maps onto it one to one. Keys that only steer fairchem's
data plumbing (`use_pbc`, `otf_graph`, ...) are accepted and recorded but change nothing here.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from eqv2.nn.activations import (
    ACTIVATIONS,
    attention_activation_name,
    ffn_activation_name,
    ffn_activation_names,
)
from eqv2.nn.envelope import make_envelope
from eqv2.nn.norms import NORMS

#: Defaults the reference uses when `avg_num_nodes` / `avg_degree` are None (OC20 S2EF statistics).
AVG_NUM_NODES = 77.81317
AVG_DEGREE = 23.395238876342773

#: ``norm_type`` names at import (`eqv2.nn.norms.NORMS` is what is checked; ``merge_layer_norm``
#: is ``rms_norm_sh``)
NORM_TYPES = tuple(NORMS)
#: ``equiformer_v2``: fairchem's ``EquiformerV2Backbone``; ``dens``: its ``EqV2DeNSBackbone``
#: (adds the force-encoding SO(3) linear whose l=0 bias reaches every node at inference).
BACKBONES = ("equiformer_v2", "dens")
#: fairchem's ``attn_activation`` / ``ffn_activation`` values: SiLU, with the variant chosen by
#: ``use_gate_act``, ``use_sep_s2_act`` and ``use_grid_mlp`` (the reference reads neither key)
FLAG_ACTIVATIONS = ("silu", "scaled_silu")
WEIGHT_INITS = ("normal", "uniform")

# Keys the reference accepts that only concern its own data pipeline or training loop.
# (``use_pbc_single`` asks the reference to build each structure's graph on its own, which is
# what eqv2 always does; ``attn_activation``/``ffn_activation``/``num_sphere_samples`` are
# validated fields below although the reference reads none of them either: it always uses SiLU.)
_IGNORED_KEYS = frozenset(
    {
        "model",
        "name",
        "use_pbc",
        "use_pbc_single",
        "regress_forces",
        "otf_graph",
        "activation_checkpoint",
        "num_distance_basis",  # unused by the reference (the Gaussian basis has 600 centres)
    }
)


@dataclass
class EquiformerV2Config:
    """Every hyper-parameter of EquiformerV2 (names and defaults follow fairchem 1.x).

    Use :meth:`from_dict` to build one from a fairchem config dictionary: it rejects unknown keys
    with a suggestion and ignores the reference's data-pipeline switches.
    """

    #: neighbour cap per target (None: every neighbour within ``max_radius``; required with an
    #: ``envelope``, since a cap drops edges discontinuously)
    max_neighbors: int | None = 500
    max_radius: float = 5.0
    max_num_elements: int = 90
    num_layers: int = 12
    sphere_channels: int = 128
    attn_hidden_channels: int = 128
    num_heads: int = 8
    attn_alpha_channels: int = 32
    attn_value_channels: int = 16
    ffn_hidden_channels: int = 512
    norm_type: str = "rms_norm_sh"
    lmax_list: list[int] = field(default_factory=lambda: [6])
    mmax_list: list[int] = field(default_factory=lambda: [2])
    grid_resolution: int | None = None
    num_sphere_samples: int = 128
    edge_channels: int = 128
    use_atom_edge_embedding: bool = True
    share_atom_edge_embedding: bool = False
    use_m_share_rad: bool = False
    distance_function: str = "gaussian"
    attn_activation: str = "scaled_silu"
    use_s2_act_attn: bool = False
    use_attn_renorm: bool = True
    ffn_activation: str = "scaled_silu"
    #: eqv2 extension: the feed-forward hidden width as a multiple of ``sphere_channels``
    #: (EquiformerV3's wider FFNs); when set it overrides ``ffn_hidden_channels``
    ffn_width_multiplier: float | None = None
    #: eqv2 extension: sphere grid of the attention (edge frame) / feed-forward (nodes)
    #: activations: points per angle or ``[lat, long]``; None: ``grid_resolution``
    #: (EquiformerV3's ``attn_grid_resolution_list`` / ``ffn_grid_resolution_list``)
    attn_grid_resolution: int | list[int] | None = None
    ffn_grid_resolution: int | list[int] | None = None
    use_gate_act: bool = False
    use_grid_mlp: bool = False
    use_sep_s2_act: bool = True
    alpha_drop: float = 0.1
    drop_path_rate: float = 0.05
    proj_drop: float = 0.0
    weight_init: str = "normal"
    enforce_max_neighbors_strictly: bool = True
    avg_num_nodes: float | None = None
    avg_degree: float | None = None
    use_energy_lin_ref: bool = False
    load_energy_lin_ref: bool = False
    #: eqv2 extension: compute forces as -dE/dx instead of with the direct force head.
    direct_forces: bool = True
    #: which backbone (see ``BACKBONES``); fairchem files name it in ``backbone.model``.
    backbone: str = "equiformer_v2"
    #: DeNS backbone only: encode the forces handed in ``graph["denoising_forces"]`` (zeros
    #: when absent, as at inference) / the noise scale in ``graph["denoising_sigmas"]``.
    use_force_encoding: bool = True
    use_noise_schedule_sigma_encoding: bool = False
    #: output heads as fairchem declares them, ``{name: {"module": ..., **kwargs}}`` (see
    #: ``eqv2.model.heads.HEAD_TYPES``); None: an energy head plus, with ``direct_forces``, a
    #: direct force head (the OC20 layout).
    heads: dict[str, dict[str, Any]] | None = None
    #: eqv2 extension, the smooth mode (EquiformerV3): a cut-off envelope weighting every
    #: edge in the attention softmax, the messages and the edge-degree embedding, e.g.
    #: ``{"type": "polynomial", "p": 5}`` (``eqv2.nn.envelope.ENVELOPES``); None: EquiformerV2.
    envelope: dict[str, Any] | None = None
    #: Keys from the source config that were accepted but have no effect (kept for export).
    ignored: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lmax_list = [int(v) for v in self.lmax_list]
        self.mmax_list = [int(v) for v in self.mmax_list]
        if self.avg_num_nodes is None:
            self.avg_num_nodes = AVG_NUM_NODES
        if self.avg_degree is None:
            self.avg_degree = AVG_DEGREE
        if self.ffn_width_multiplier is not None:
            if not self.ffn_width_multiplier > 0:
                raise ValueError(
                    f"ffn_width_multiplier={self.ffn_width_multiplier}: must be positive (the "
                    "feed-forward width is this times sphere_channels), or null."
                )
            self.ffn_hidden_channels = round(self.ffn_width_multiplier * self.sphere_channels)
        self.validate()

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def lmax(self) -> int:
        return self.lmax_list[0]

    @property
    def mmax(self) -> int:
        return self.mmax_list[0]

    @property
    def attention_activation(self) -> str:
        """Name of the attention activation (`eqv2.nn.activations.ACTIVATIONS`): the
        ``attn_activation`` key if it names one, else what the fairchem switches select."""
        if self.attn_activation in FLAG_ACTIVATIONS:
            return attention_activation_name(self.use_gate_act, self.use_sep_s2_act)
        return self.attn_activation

    @property
    def feed_forward_activation(self) -> str:
        """Name of the feed-forward activation (`eqv2.nn.activations.ffn_activation_names`): the
        ``ffn_activation`` key if it names one, else what the fairchem switches select."""
        if self.ffn_activation in FLAG_ACTIVATIONS:
            return ffn_activation_name(self.use_gate_act, self.use_sep_s2_act, self.use_grid_mlp)
        return self.ffn_activation

    @property
    def edge_grid_resolution(self) -> int | tuple[int, int] | None:
        """Sphere grid of the attention activations (points per angle, (lat, long) or None)."""
        return _resolution(self.attn_grid_resolution, self.grid_resolution)

    @property
    def node_grid_resolution(self) -> int | tuple[int, int] | None:
        """Sphere grid of the feed-forward activations (points per angle, (lat, long) or None)."""
        return _resolution(self.ffn_grid_resolution, self.grid_resolution)

    def validate(self) -> None:
        """Raise ValueError naming the offending key and a fix."""
        if len(self.lmax_list) != 1 or len(self.mmax_list) != 1:
            raise ValueError(
                f"lmax_list={self.lmax_list}, mmax_list={self.mmax_list}: eqv2 supports one "
                "resolution (a single lmax and mmax), as every released EquiformerV2 uses; "
                "pass one-element lists such as lmax_list=[6], mmax_list=[2]."
            )
        if not 0 <= self.mmax <= self.lmax:
            raise ValueError(
                f"mmax_list={self.mmax_list} with lmax_list={self.lmax_list}: "
                "need 0 <= mmax <= lmax."
            )
        if self.lmax < 1:
            raise ValueError(f"lmax_list={self.lmax_list}: lmax must be at least 1 for forces.")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone={self.backbone!r}: choose one of {BACKBONES}.")
        if self.use_noise_schedule_sigma_encoding and self.backbone != "dens":
            raise ValueError(
                "use_noise_schedule_sigma_encoding=True needs the DeNS backbone (backbone='dens')."
            )
        if self.use_s2_act_attn:
            raise ValueError(
                "use_s2_act_attn=True: the reference EquiformerV2 does not implement attention "
                "after an S2 activation (it refuses this setting too); set it to false."
            )
        if isinstance(self.num_sphere_samples, bool) or not (
            isinstance(self.num_sphere_samples, int) and self.num_sphere_samples > 0
        ):
            raise ValueError(
                f"num_sphere_samples={self.num_sphere_samples!r}: must be a positive integer "
                "(it has no effect in eqv2 nor in the reference; 128 in every released config)."
            )
        if self.heads is not None and not isinstance(self.heads, dict):
            raise ValueError(
                f"heads={self.heads!r}: expected a mapping {{name: {{'module': ..., ...}}}}."
            )
        if self.norm_type not in NORMS:
            raise ValueError(f"norm_type={self.norm_type!r}: choose one of {tuple(NORMS)}.")
        self._validate_activations()
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init={self.weight_init!r}: choose one of {WEIGHT_INITS}.")
        if self.distance_function != "gaussian":
            raise ValueError(
                f"distance_function={self.distance_function!r}: only 'gaussian' exists in the "
                "reference EquiformerV2."
            )
        if self.share_atom_edge_embedding and not self.use_atom_edge_embedding:
            raise ValueError("share_atom_edge_embedding=True needs use_atom_edge_embedding=True.")
        if self.use_energy_lin_ref and not self.load_energy_lin_ref:
            raise ValueError("use_energy_lin_ref=True needs load_energy_lin_ref=True.")
        for key in (
            "num_layers",
            "sphere_channels",
            "attn_hidden_channels",
            "num_heads",
            "attn_alpha_channels",
            "attn_value_channels",
            "ffn_hidden_channels",
            "edge_channels",
            "max_num_elements",
        ):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key}={getattr(self, key)}: must be a positive integer.")
        if self.max_radius <= 0:
            raise ValueError(f"max_radius={self.max_radius}: must be positive (Å).")
        self._validate_smooth()
        if self.grid_resolution is not None and self.grid_resolution < 2 * self.lmax + 1:
            raise ValueError(
                f"grid_resolution={self.grid_resolution} is too coarse for lmax={self.lmax}: "
                f"use at least {2 * self.lmax + 2} (or None for the automatic choice)."
            )
        self._validate_grid("attn_grid_resolution", self.mmax)
        self._validate_grid("ffn_grid_resolution", self.lmax)

    def _validate_activations(self) -> None:
        checks = (
            ("attn_activation", ACTIVATIONS, "use_gate_act/use_sep_s2_act"),
            ("ffn_activation", ffn_activation_names(), "use_gate_act/use_sep_s2_act/use_grid_mlp"),
        )
        for key, names, flags in checks:
            value = getattr(self, key)
            if value not in FLAG_ACTIVATIONS and value not in names:
                raise ValueError(
                    f"{key}={value!r}: choose one of {FLAG_ACTIVATIONS} (SiLU activations "
                    f"chosen by {flags}, as in fairchem, whose blocks never read this key) or "
                    f"an activation by name: {', '.join(names)}."
                )
        if self.use_grid_mlp and self.ffn_activation not in FLAG_ACTIVATIONS:
            if "grid_mlp" not in self.ffn_activation:
                raise ValueError(
                    f"use_grid_mlp=True with ffn_activation={self.ffn_activation!r}: the grid MLP "
                    "replaces the feed-forward activation; name a grid MLP (grid_mlp, "
                    "separable_grid_mlp, swiglu_grid_mlp) or set use_grid_mlp: false."
                )

    def _validate_grid(self, key: str, mmax: int) -> None:
        value = getattr(self, key)
        if value is None:
            return
        if not isinstance(value, int) and len(value) != 2:
            raise ValueError(f"{key}={value!r}: give one size or a [lat, long] pair.")
        lat, long = (value, value) if isinstance(value, int) else value
        if lat % 2 or lat < 2 * (self.lmax + 1) or long < 2 * mmax + 1:
            raise ValueError(
                f"{key}={value!r} is too coarse for lmax={self.lmax}, mmax={mmax}: the latitude "
                f"count must be even and at least {2 * (self.lmax + 1)}, the longitude count "
                f"at least {2 * mmax + 1}."
            )

    def _validate_smooth(self) -> None:
        """The envelope names a known type, and the neighbour rule has no cap with it."""
        if self.max_neighbors is not None and (
            isinstance(self.max_neighbors, bool) or int(self.max_neighbors) < 1
        ):
            raise ValueError(
                f"max_neighbors={self.max_neighbors!r}: must be a positive integer, or None "
                "for every neighbour within max_radius."
            )
        if self.envelope is None:
            return
        make_envelope(self.envelope, self.max_radius)  # raises on a bad type or option
        if self.max_neighbors is not None:
            raise ValueError(
                f"envelope={self.envelope!r} with max_neighbors={self.max_neighbors}: a "
                "neighbour cap drops edges discontinuously, which the envelope cannot smooth; "
                "set max_neighbors to None (YAML: null) to keep every neighbour within "
                "max_radius (docs/smooth.md gives its cost)."
            )

    # -- conversion ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> EquiformerV2Config:
        """Build a config from a fairchem-style dictionary of backbone arguments.

        Unknown keys raise ``ValueError`` with the closest known name; fairchem's data-pipeline
        switches (``use_pbc``, ``otf_graph``, ...) are accepted and ignored.
        """
        known = {f.name for f in dataclasses.fields(cls)} - {"ignored"}
        kwargs: dict[str, Any] = {}
        ignored: dict[str, Any] = {}
        for key, value in config.items():
            if key in known:
                kwargs[key] = value
            elif key in _IGNORED_KEYS:
                ignored[key] = value
            else:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"Unknown EquiformerV2 config key {key!r} (value {value!r}).{hint} "
                    "Remove it or fix its spelling."
                )
        return cls(**kwargs, ignored=ignored)

    def to_dict(self, include_ignored: bool = False) -> dict[str, Any]:
        """The config as a plain dictionary with fairchem's argument names."""
        out = dataclasses.asdict(self)
        ignored = out.pop("ignored")
        if include_ignored:
            out.update(ignored)
        return out


def _resolution(value: int | list[int] | None, default: int | None) -> int | tuple[int, int] | None:
    """A grid size as `eqv2.so3` takes it (hashable: a list becomes a tuple)."""
    if value is None:
        return default
    return value if isinstance(value, int) else (int(value[0]), int(value[1]))
