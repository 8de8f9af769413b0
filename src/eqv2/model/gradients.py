"""Energy-conserving forces and stress as derivatives of the predicted energy.

The reference predicts forces with a separate head ("direct forces"), which is fast but not
the gradient of any energy: molecular dynamics with it drifts. Here forces are −∂E/∂r and the
stress is (1/V) ∂E/∂ε for a homogeneous strain ε applied to positions and cell, both by
autograd through the edge vectors (``eqv2.graph.edge_vectors``), the edge frames and the
Wigner matrices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from eqv2.graph import edge_vectors


def energy_derivatives(
    energy_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    graph: Mapping[str, torch.Tensor],
    *,
    stress: bool = False,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Energies (B,), forces −∂E/∂r (N, 3) and optionally stress (B, 3, 3) in eV/Å³.

    Args:
        energy_fn: maps a graph dict (with ``edge_vec`` recomputed here) to energies (B,).
        graph: a batch from ``eqv2.graph.batch_structures`` (needs ``pos``, ``cell``,
            ``cell_offsets``).
        stress: also return the stress σ = (1/V) ∂E/∂ε (ASE's sign convention: positive under
            tension). Meaningful for fully periodic cells; for a slab V includes the vacuum.
        create_graph: keep the graph of the derivatives (to train on them).
    """
    pos = graph["pos"].detach().requires_grad_(True)
    cell = graph["cell"].detach().to(pos.dtype)
    batch = graph["batch"]
    inputs = [pos]
    # geometry in full precision even under autocast (bfloat16 would move atoms by ~0.01 Å)
    with torch.autocast(pos.device.type, enabled=False):
        if stress:
            strain = torch.zeros_like(cell, requires_grad=True)  # (B, 3, 3), symmetric use
            sym = 0.5 * (strain + strain.transpose(1, 2))
            deform = torch.eye(3, dtype=pos.dtype, device=pos.device) + sym
            pos_used = torch.bmm(pos.unsqueeze(1), deform[batch]).squeeze(1)
            cell_used = torch.bmm(cell, deform)
            inputs.append(strain)
        else:
            pos_used, cell_used = pos, cell
        edge_vec = edge_vectors(
            pos_used, cell_used, batch, graph["edge_index"], graph["cell_offsets"]
        )
    energy = energy_fn({**graph, "pos": pos_used, "cell": cell_used, "edge_vec": edge_vec})
    grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph)
    out = {"energy": energy, "forces": -grads[0]}
    if stress:
        volume = torch.linalg.det(cell).abs().clamp_min(1e-12).view(-1, 1, 1)
        out["stress"] = grads[1] / volume
    return out
