"""The EquiformerV2 model: embeddings, transformer blocks and output heads.

``EquiformerV2(config).forward(graph)`` takes a batch built by ``eqv2.graph.batch_structures``
(a dict of tensors) and returns ``{"energy": (B,), "forces": (N, 3)}`` plus whatever further
heads the config declares (a stress head adds ``stress_isotropic (B, 1)`` and
``stress_anisotropic (B, 5)``), in the model's units (before any normalisers, which
``eqv2.model.Potential`` applies).

Parameter names equal the reference's monolithic layout (``sphere_embedding.weight``,
``blocks.0.ga.so2_conv_1.fc_m0.weight``, ``energy_block.*``, ``force_block.*``; a stress head
sits under ``stress_head.*``, a Noisy Nodes head under ``denoising_head.*``, the DeNS force
encoding under ``force_embedding.*``), so fairchem
checkpoints map onto this module by renaming prefixes only (``eqv2.fairchem``). The heads
are chosen by ``config.heads`` (``eqv2.model.heads``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from eqv2.model.config import EquiformerV2Config
from eqv2.model.heads import (
    attention_args,
    attention_options,
    ffn_options,
    resolve_heads,
    resolve_property_heads,
)
from eqv2.nn.attention import GraphAttention
from eqv2.nn.block import TransformerBlock
from eqv2.nn.chunking import EdgeChunking
from eqv2.nn.context import EdgeContext, SphereGrids
from eqv2.nn.edge_degree import EdgeDegreeEmbedding
from eqv2.nn.envelope import make_envelope
from eqv2.nn.feed_forward import FeedForward
from eqv2.nn.force_encoding import ForceEmbedding
from eqv2.nn.heads import DeNSForceHead, HeadInputs
from eqv2.nn.norm import make_norm
from eqv2.nn.radial import GaussianBasis, RadialMLP
from eqv2.nn.so3_linear import SO3Linear
from eqv2.so3 import CoefficientLayout

FRAME_ROLLS = ("deterministic", "random")


class EquiformerV2(nn.Module):
    """EquiformerV2 with an energy head and a direct force head (or −dE/dx forces).

    Args:
        config: hyper-parameters; keyword arguments with the reference's names are accepted
            instead (``EquiformerV2(num_layers=2, lmax_list=[4], ...)``).
        frame_roll: how each edge frame's free roll angle is chosen: ``"deterministic"``
            (default; the same input always gives the same output) or ``"random"`` (the
            reference's behaviour, useful to measure the roll's effect).
    """

    def __init__(
        self,
        config: EquiformerV2Config | None = None,
        *,
        frame_roll: str = "deterministic",
        **kwargs,
    ) -> None:
        super().__init__()
        if config is None:
            config = EquiformerV2Config.from_dict(kwargs)
        elif kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        if frame_roll not in FRAME_ROLLS:
            raise ValueError(f"frame_roll={frame_roll!r}: choose one of {FRAME_ROLLS}.")
        self.config = config
        self.frame_roll = frame_roll
        #: set when training on −dE/dx forces: S2 activations then support double backward
        self.differentiable_twice = False
        #: trade a little training time for memory: the grid MLP recomputes its grid tensors
        #: in backward instead of storing them (31M config on CPU: -21 % peak memory, the step
        #: 9-18 % slower in two A/B pairs)
        self.memory_saving = False
        #: how the edge loops (attention, force head, edge-degree embedding) split large
        #: graphs' edges into chunks (`eqv2.nn.chunking`): automatic from a memory budget
        self.edge_chunking = EdgeChunking()
        c = config
        lmax, C = c.lmax, c.sphere_channels
        #: coefficient layout (lmax, mmax): sizes, index maps and sphere grids (eqv2.so3)
        self.layout = CoefficientLayout(lmax, c.mmax)

        self.sphere_embedding = nn.Embedding(c.max_num_elements, C)
        self.distance_expansion = GaussianBasis(c.max_radius)
        #: smooth mode's cut-off envelope (``config.envelope``), None for EquiformerV2
        self.envelope = make_envelope(c.envelope, c.max_radius)
        edge_channels = [self.distance_expansion.num_output, c.edge_channels, c.edge_channels]
        if c.share_atom_edge_embedding:
            self.source_embedding = nn.Embedding(c.max_num_elements, c.edge_channels)
            self.target_embedding = nn.Embedding(c.max_num_elements, c.edge_channels)
            edge_channels[0] += 2 * c.edge_channels
        else:
            self.source_embedding = self.target_embedding = None
        block_atom_edge = c.use_atom_edge_embedding and not c.share_atom_edge_embedding
        self.heads = resolve_heads(c)  # validates the head config before anything is built
        property_heads = resolve_property_heads(c)

        self.edge_degree_embedding = EdgeDegreeEmbedding(
            C, lmax, c.max_num_elements, edge_channels, block_atom_edge, c.avg_degree
        )

        def attention(output_channels: int, alpha_drop: float) -> GraphAttention:
            return GraphAttention(
                *attention_args(c, edge_channels, output_channels),
                alpha_drop=alpha_drop,
                **attention_options(c),
            )

        def feed_forward(output_channels: int) -> FeedForward:
            return FeedForward(C, c.ffn_hidden_channels, output_channels, lmax, **ffn_options(c))

        self.blocks = nn.ModuleList(
            TransformerBlock(
                attention(C, c.alpha_drop),
                feed_forward(C),
                c.norm_type,
                lmax,
                C,
                drop_path_rate=c.drop_path_rate,
                proj_drop=c.proj_drop,
            )
            for _ in range(c.num_layers)
        )
        self.norm = make_norm(c.norm_type, lmax, C)
        self.force_embedding = ForceEmbedding(C, lmax) if c.backbone == "dens" else None
        self.noise_schedule_sigma_embedding = (
            nn.Linear(1, C) if c.use_noise_schedule_sigma_encoding else None
        )
        self.energy_block = self.force_block = self.stress_head = self.denoising_head = None
        for head in self.heads.values():
            setattr(self, head.attribute, head.type.build(c, head.spec, edge_channels))
        #: one head per named target (empty for S2EF models), and each one's kind
        #: (``property``: per-structure scalar, ``node_vector``: per-atom vector)
        self.property_kinds = {name: head.type.kind for name, head in property_heads.items()}
        self.property_heads = nn.ModuleDict(
            {
                name: head.type.build(c, {**head.spec, "output_name": name}, edge_channels)
                for name, head in property_heads.items()
            }
        )
        if c.load_energy_lin_ref:
            self.energy_lin_ref = nn.Parameter(torch.zeros(c.max_num_elements), requires_grad=False)
        else:
            self.energy_lin_ref = None

        init_weights(self, c.weight_init)
        if self.stress_head is not None:  # the reference initialises this head uniformly
            for module in self.stress_head.block.modules():
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
                    nn.init.zeros_(module.bias)

    def _edge_scalars(
        self, distance: torch.Tensor, source_z: torch.Tensor, target_z: torch.Tensor
    ) -> torch.Tensor:
        """Invariant edge features: distance basis [+ shared source/target element embeddings]."""
        scalars = self.distance_expansion(distance)
        if self.source_embedding is None:
            return scalars
        return torch.cat(
            (scalars, self.source_embedding(source_z), self.target_embedding(target_z)), dim=1
        )

    # -- forward ------------------------------------------------------------------------------
    def forward(self, graph: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Energies (B,) and forces (N, 3) for a batch of structures.

        ``graph`` needs ``atomic_numbers (N,)``, ``batch (N,)``, ``natoms (B,)``,
        ``edge_index (2, E)`` (source, target) and ``edge_vec (E, 3)``; ``edge_rot (E, 3, 3)``
        optionally replaces the computed edge frames (to replay another run's frames). With
        ``direct_forces=False`` it also needs ``pos`` with gradients reaching ``edge_vec``.
        A corrupted training batch (`eqv2.train.corruption`: ``denoising_mask`` and, for the
        DeNS backbone, ``denoising_forces`` / ``denoising_sigmas``) also gets
        ``"denoising" (N, 3)``, the predicted position noise.
        """
        c = self.config
        atomic_numbers = graph["atomic_numbers"].long()
        batch = graph["batch"]
        num_graphs = int(graph["natoms"].shape[0])
        num_nodes = int(atomic_numbers.shape[0])
        edge_vec = graph["edge_vec"].to(self.sphere_embedding.weight.dtype)
        edges = EdgeContext.build(
            layout=self.layout,
            edge_index=graph["edge_index"],
            edge_vec=edge_vec,
            atomic_numbers=atomic_numbers,
            batch=batch,
            num_graphs=num_graphs,
            edge_scalars=self._edge_scalars,
            roll=self.frame_roll,
            rotation=graph.get("edge_rot"),
            chunking=self.edge_chunking,
            envelope=self.envelope,
        )
        grids = SphereGrids.build(
            layout=self.layout,
            resolution=c.edge_grid_resolution,
            node_resolution=c.node_grid_resolution,
            dtype=edge_vec.dtype,
            device=edge_vec.device,
            differentiable_twice=self.differentiable_twice,
            memory_saving=self.memory_saving,
        )

        x = torch.zeros(
            num_nodes,
            self.layout.num_coefficients,
            c.sphere_channels,
            dtype=edge_vec.dtype,
            device=edge_vec.device,
        )
        x[:, 0] = self.sphere_embedding(atomic_numbers)
        if self.force_embedding is not None:  # DeNS: the encoding's l=0 bias reaches all nodes
            forces = graph.get("denoising_forces") if c.use_force_encoding else None
            x = x + self.force_embedding.encode(forces, num_nodes, x)
        if self.noise_schedule_sigma_embedding is not None:
            sigmas = graph.get("denoising_sigmas")
            if sigmas is None:
                sigmas = x.new_zeros(num_nodes, 1)
            x = x.clone()
            x[:, 0] = x[:, 0] + self.noise_schedule_sigma_embedding(sigmas.to(x.dtype))
        x = x + self.edge_degree_embedding(edges)
        for block in self.blocks:
            x = block(x, edges, grids)
        x = self.norm(x)

        # x leaves the final norm in full precision: so do the heads' sums
        inputs = HeadInputs(edges, grids, edge_vec, graph["natoms"])
        out: dict[str, torch.Tensor] = {}
        for kind, head in self.heads.items():
            if kind != "denoising":  # evaluated on corrupted training batches only
                out.update(getattr(self, head.attribute)(x, inputs))
        for property_head in self.property_heads.values():
            out.update(property_head(x, inputs))
        if "denoising_mask" in graph:  # a corrupted batch (eqv2.train.corruption)
            out["denoising"] = self._denoise(x, inputs)
        if self.energy_lin_ref is not None and c.use_energy_lin_ref and "energy" in out:
            refs = self.energy_lin_ref[atomic_numbers].to(x.dtype)
            out["energy"] = out["energy"].index_add(0, batch, refs)
        return out

    @property
    def can_denoise(self) -> bool:
        """Whether the model predicts position noise (a denoising head, or DeNS force head)."""
        return self.denoising_head is not None or isinstance(self.force_block, DeNSForceHead)

    def _denoise(self, x: torch.Tensor, inputs: HeadInputs) -> torch.Tensor:
        """Predicted position noise (N, 3): Noisy Nodes' head, else DeNS's denoising block."""
        if self.denoising_head is not None:
            return self.denoising_head(x, inputs)["denoising"]
        if isinstance(self.force_block, DeNSForceHead):
            return self.force_block.denoise(x, inputs)
        raise ValueError(
            "this model has no denoising head: a corrupted batch (graph['denoising_mask']) "
            "needs the DeNS force head or a position_denoising_head."
        )

    @property
    def num_params(self) -> int:
        """Number of parameters (trainable and frozen)."""
        return sum(p.numel() for p in self.parameters())


def init_weights(model: nn.Module, weight_init: str) -> None:
    """Initialise like the reference: biases 0, LayerNorms 1/0, Linear and SO(3)-linear weights
    N(0, 1/fan_in) for ``"normal"`` (kept as built for ``"uniform"``), radial MLP Linears
    U(±1/√fan_in)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, SO3Linear)):
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            if weight_init == "normal":
                nn.init.normal_(module.weight, 0.0, 1.0 / math.sqrt(module.in_features))
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for module in model.modules():
        if isinstance(module, RadialMLP):
            for layer in module.net:
                if isinstance(layer, nn.Linear):
                    bound = 1.0 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.weight, -bound, bound)
                    nn.init.zeros_(layer.bias)
