"""Symmetric rank-2 tensor head (stress), as fairchem's ``Rank2SymmetricTensorHead``.

Per edge e = (source j → target i) with vector r = pos_j − pos_i (+ shift):

1. ``w_e = sphharm_norm(Y(r))``: spherical harmonics of degrees 0..lmax of the *unnormalised*
   vector (degree l grows as |r|^l; 'integral' normalisation), through an equivariant norm with
   one channel;
2. ``h_e = LayerNorm(Σ_s w_e[s] · [x_j, x_i][s])``: the source and target features (2C
   channels; only the target's with ``use_source_target_embedding=False``) contracted with w_e;
3. decomposed: per target atom the mean of ``h_e`` (→ scalar MLP → 1 value) and of
   ``Y²(r̂) ⊗ h_e`` (→ l=2 MLP applied to each of the 5 components → 5 values). The l=2 MLP's
   biases are added to every component, which is not rotation-equivariant; the reference does
   it, so we do too. Non-decomposed: the mean of ``h_e ⊗ (r rᵀ)`` → MLP → a 3×3 tensor.
   With ``edge_level_mlp`` the MLPs run per edge before the atom mean;
4. the mean over the atoms of each structure (sum with ``extensive``, then divided by the
   head's ``avg_num_nodes`` in the decomposed case).

Outputs: ``{name}_isotropic (B, 1)`` and ``{name}_anisotropic (B, 5)`` (e3nn's l=2 order; see
:func:`eqv2.so3.rank2.rank2_from_irreps`) or ``{name} (B, 3, 3)``, in normalised units.
"""

from __future__ import annotations

import torch
from torch import nn

from eqv2.nn.heads.inputs import HeadInputs, per_structure
from eqv2.nn.norm import LayerNorm, make_norm
from eqv2.nn.precision import full_precision
from eqv2.nn.segment import segment_sum
from eqv2.so3.harmonics import spherical_harmonics


def _mlp(width: int, num_layers: int) -> nn.Sequential:
    """Linear(width, width)-SiLU repeated, then Linear(width, 1) (fairchem's layout)."""
    layers: list[nn.Module] = []
    for _ in range(num_layers - 1):
        layers += [nn.Linear(width, width), nn.SiLU()]
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _edge_mean(values: torch.Tensor, dst: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Mean over each target's incoming edges; 0 for atoms without edges (torch_scatter's)."""
    counts = torch.bincount(dst, minlength=num_nodes).clamp_min(1).to(values.dtype)
    return segment_sum(values, dst, num_nodes) / counts.view(-1, *([1] * (values.dim() - 1)))


class Rank2IrrepsBlock(nn.Module):
    """Decomposed block: an isotropic scalar and an anisotropic l=2 part (fairchem's
    ``Rank2DecompositionEdgeBlock``; parameters ``scalar_MLP.*``, ``irrep2_MLP.*``)."""

    def __init__(self, width: int, num_layers: int = 2, edge_level: bool = False) -> None:
        super().__init__()
        self.edge_level = edge_level
        self.scalar_MLP = _mlp(width, num_layers)
        self.irrep2_MLP = _mlp(width, num_layers)

    def forward(
        self, edge_vec: torch.Tensor, h: torch.Tensor, dst: torch.Tensor, num_nodes: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom (N, 1) scalars and (N, 5) l=2 parts."""
        y2 = spherical_harmonics(2, edge_vec, normalize=True)[:, 4:9]  # (E, 5)
        irrep2 = y2.unsqueeze(2) * h.unsqueeze(1)  # (E, 5, width)
        if self.edge_level:
            scalar = _edge_mean(self.scalar_MLP(h), dst, num_nodes)
            irrep2 = _edge_mean(self.irrep2_MLP(irrep2), dst, num_nodes)
        else:
            scalar = self.scalar_MLP(_edge_mean(h, dst, num_nodes))
            irrep2 = self.irrep2_MLP(_edge_mean(irrep2, dst, num_nodes))
        return scalar, irrep2.squeeze(2)


class Rank2OuterBlock(nn.Module):
    """Non-decomposed block: features times the edge outer product ``r rᵀ`` (fairchem's
    ``Rank2Block``; parameters ``r2tensor_MLP.*``)."""

    def __init__(self, width: int, num_layers: int = 2, edge_level: bool = False) -> None:
        super().__init__()
        self.edge_level = edge_level
        self.r2tensor_MLP = _mlp(width, num_layers)

    def forward(
        self, edge_vec: torch.Tensor, h: torch.Tensor, dst: torch.Tensor, num_nodes: int
    ) -> torch.Tensor:
        """Per-atom (N, 9) row-major 3×3 tensors."""
        outer = (edge_vec.unsqueeze(2) * edge_vec.unsqueeze(1)).reshape(-1, 1, 9)
        edge_outer = h.unsqueeze(2) * outer  # (E, width, 9)
        if self.edge_level:
            per_edge = self.r2tensor_MLP(edge_outer.transpose(1, 2)).squeeze(2)  # (E, 9)
            return _edge_mean(per_edge, dst, num_nodes)
        node = _edge_mean(edge_outer, dst, num_nodes).transpose(1, 2)  # (N, 9, width)
        return self.r2tensor_MLP(node).squeeze(2)


class Rank2Head(nn.Module):
    """Symmetric rank-2 tensor per structure (see the module docstring).

    Args:
        sphere_channels: C of the backbone's node features.
        lmax: the backbone's lmax (degrees of the edge weights).
        norm_type: the backbone's norm type (used for ``sphharm_norm``).
        output_name: outputs are named after it (``stress`` → ``stress_isotropic`` ...).
        decompose: predict the l=0 and l=2 parts separately (the OMat24 models) or the full
            tensor from outer products.
        edge_level_mlp: run the MLPs per edge before the atom mean.
        num_mlp_layers: Linear layers per MLP.
        use_source_target_embedding: concatenate source and target features (2C channels).
        extensive: sum over atoms instead of the mean.
        avg_num_nodes: divisor of an extensive decomposed output (the head's own argument, 1.0
            by default, not the backbone's).
    """

    def __init__(
        self,
        sphere_channels: int,
        lmax: int,
        norm_type: str,
        output_name: str = "stress",
        decompose: bool = False,
        edge_level_mlp: bool = False,
        num_mlp_layers: int = 2,
        use_source_target_embedding: bool = False,
        extensive: bool = False,
        avg_num_nodes: float = 1.0,
    ) -> None:
        super().__init__()
        if int(num_mlp_layers) < 1:
            raise ValueError(f"num_mlp_layers={num_mlp_layers}: must be at least 1.")
        self.lmax = lmax
        self.output_name = output_name
        self.decompose = bool(decompose)
        self.use_source_target_embedding = bool(use_source_target_embedding)
        self.extensive = bool(extensive)
        self.avg_num_nodes = float(avg_num_nodes)
        width = sphere_channels * (2 if self.use_source_target_embedding else 1)
        self.sphharm_norm = make_norm(norm_type, lmax, 1)
        self.xedge_layer_norm = LayerNorm(width)
        block = Rank2IrrepsBlock if self.decompose else Rank2OuterBlock
        self.block = block(width, int(num_mlp_layers), bool(edge_level_mlp))

    @full_precision
    def _edge_weights(self, edge_vec: torch.Tensor) -> torch.Tensor:
        sh = spherical_harmonics(self.lmax, edge_vec, normalize=False)
        return self.sphharm_norm(sh.unsqueeze(2)).squeeze(2)  # (E, S)

    def forward(self, x: torch.Tensor, inputs: HeadInputs) -> dict[str, torch.Tensor]:
        edges = inputs.edges
        edge_vec = inputs.edge_vec.to(x.dtype)
        weights = self._edge_weights(edge_vec).to(x.dtype)
        parts = [x.index_select(0, edges.dst)]
        if self.use_source_target_embedding:
            parts.insert(0, x.index_select(0, edges.src))
        h = torch.cat([torch.einsum("esc,es->ec", p, weights) for p in parts], dim=1)
        h = self.xedge_layer_norm(h).to(x.dtype)
        reduce = "sum" if self.extensive else "mean"
        name = self.output_name
        if self.decompose:
            scalar, irrep2 = self.block(edge_vec, h, edges.dst, edges.num_nodes)
            iso = per_structure(scalar, inputs, reduce)
            aniso = per_structure(irrep2, inputs, reduce)
            if self.extensive:
                iso, aniso = iso / self.avg_num_nodes, aniso / self.avg_num_nodes
            return {f"{name}_isotropic": iso, f"{name}_anisotropic": aniso}
        node = self.block(edge_vec, h, edges.dst, edges.num_nodes)
        return {name: per_structure(node, inputs, reduce).view(-1, 3, 3)}
