"""Edge chunking: the chunked edge path equals the unchunked one and keeps less for backward."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk, molecule

from eqv2.model import Potential
from eqv2.nn.chunking import EdgeChunking, chunk_bounds
from tests.tiny import tiny_graph, tiny_model

#: tiny model, no dropout (chunked and unchunked must see the same randomness: none)
BASE = dict(alpha_drop=0.0, drop_path_rate=0.0, max_radius=4.0, max_neighbors=30)
VARIANTS = {
    "separable_s2": {},
    "gate": {"use_gate_act": True},
    "m_share_rad": {"use_m_share_rad": True, "use_attn_renorm": False},
    "s2_grid_mlp": {"use_sep_s2_act": False, "use_grid_mlp": True},
}
#: float64 round-off of sums taken in another order
TOL = dict(rtol=1e-11, atol=1e-11)


def _structures():
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    mol = molecule("CH3OH")
    mol.rattle(0.05, seed=2)
    return [cu, mol]


def _potential(direct_forces: bool = True, **options) -> Potential:
    model = tiny_model(torch.float64, **BASE, **options, direct_forces=direct_forces)
    return Potential(model).eval()


def _outputs(pot: Potential, graph, chunking: EdgeChunking, stress: bool = False):
    pot.model.edge_chunking = chunking
    return pot.compute(graph, stress=stress)


def test_bounds_cover_every_edge_once():
    assert list(chunk_bounds(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(chunk_bounds(0, 4)) == []
    assert list(chunk_bounds(3, 8)) == [(0, 3)]


def test_chunk_size_from_budget_or_fixed():
    assert EdgeChunking(budget_bytes=1000).chunk_size(bytes_per_edge=300) == 3
    assert EdgeChunking(budget_bytes=10).chunk_size(bytes_per_edge=300) == 1
    assert EdgeChunking(budget_bytes=10, max_edges=64).chunk_size(bytes_per_edge=300) == 64
    assert EdgeChunking.off().chunk_size(bytes_per_edge=10**6) > 10**12


@pytest.mark.parametrize("kwargs", [{"budget_bytes": 0}, {"max_edges": 0}])
def test_bad_policy_is_refused_with_the_fix(kwargs):
    with pytest.raises(ValueError, match="EdgeChunking"):
        EdgeChunking(**kwargs)


def test_default_policy_leaves_small_batches_unchunked():
    """The 31M model's attention on the 269-atom OC20 batch (5,380 edges) fits one chunk."""
    pot = _potential()
    layer = pot.model.blocks[0].ga
    assert EdgeChunking().chunk_size(layer.bytes_per_edge(torch.float32)) > 10**5
    from eqv2.model import EquiformerV2Config
    from eqv2.model.equiformer_v2 import EquiformerV2  # noqa: F401  (config only below)

    config = EquiformerV2Config(
        num_layers=1, sphere_channels=128, attn_hidden_channels=64, num_heads=8,
        attn_alpha_channels=64, attn_value_channels=16, ffn_hidden_channels=128,
        edge_channels=128, lmax_list=[4], mmax_list=[2],
    )  # fmt: skip
    big = EquiformerV2(config).blocks[0].ga
    size = EdgeChunking().chunk_size(big.bytes_per_edge(torch.float32))
    assert 5380 < size < 20000


@pytest.mark.parametrize(
    ("variant", "max_edges"), [(v, 16) for v in VARIANTS] + [("separable_s2", 1)]
)
def test_direct_forces_equal_unchunked(variant, max_edges):
    pot = _potential(**VARIANTS[variant])
    graph = pot.build_graph(_structures())
    assert graph["edge_index"].shape[1] > 4 * max_edges
    whole = _outputs(pot, graph, EdgeChunking.off())
    chunked = _outputs(pot, graph, EdgeChunking(max_edges=max_edges))
    for key in ("energy", "forces"):
        torch.testing.assert_close(chunked[key], whole[key], **TOL)


def test_gradient_forces_and_stress_equal_unchunked():
    pot = _potential(direct_forces=False)
    graph = pot.build_graph(_structures())
    whole = _outputs(pot, graph, EdgeChunking.off(), stress=True)
    chunked = _outputs(pot, graph, EdgeChunking(max_edges=16), stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(chunked[key], whole[key], **TOL)


def test_stress_of_a_direct_force_model_equals_unchunked():
    pot = _potential(direct_forces=True)
    graph = pot.build_graph(_structures())
    whole = _outputs(pot, graph, EdgeChunking.off(), stress=True)
    chunked = _outputs(pot, graph, EdgeChunking(budget_bytes=4096), stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(chunked[key], whole[key], **TOL)


def _parameter_gradients(model, graph, chunking):
    model.edge_chunking = chunking
    model.zero_grad(set_to_none=True)
    out = model(graph)
    (out["energy"].square().sum() + out["forces"].square().sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_training_gradients_equal_unchunked():
    model = tiny_model(torch.float64, **BASE).train()
    graph = tiny_graph(model, _structures())
    whole = _parameter_gradients(model, graph, EdgeChunking.off())
    chunked = _parameter_gradients(model, graph, EdgeChunking(max_edges=5))
    assert whole.keys() == chunked.keys() and len(whole) > 10
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], **TOL, msg=name)


def _saved_bytes(model, graph, chunking) -> int:
    """Bytes of tensors autograd keeps for backward during the forward."""
    model.edge_chunking = chunking
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(graph)
    return total


def test_chunks_are_recomputed_not_kept_for_backward():
    """Under autograd a chunk keeps only its inputs: far less than the unchunked path keeps."""
    model = tiny_model(torch.float64, **BASE).eval()
    graph = tiny_graph(model, _structures())
    whole = _saved_bytes(model, graph, EdgeChunking.off())
    chunked = _saved_bytes(model, graph, EdgeChunking(max_edges=8))
    assert chunked < 0.5 * whole


def test_edge_slice_slices_every_per_edge_field():
    """A per-edge field added to EdgeContext must also be sliced by `edge_slice`."""
    model = tiny_model(torch.float64, **BASE)
    graph = tiny_graph(model, _structures())
    captured = {}

    def keep(module, args) -> None:  # returns None: the arguments stay unchanged
        captured["edges"] = args[0]

    hook = model.edge_degree_embedding.register_forward_pre_hook(keep)
    with torch.no_grad():
        model(graph)
    hook.remove()
    edges = captured["edges"]
    num_edges = edges.num_edges
    assert num_edges != edges.num_nodes
    part = edges.edge_slice(3, 8)
    for name, value in edges._asdict().items():
        if isinstance(value, torch.Tensor) and value.shape[0] % num_edges == 0 and name != "batch":
            rows = value.shape[0] // num_edges
            assert getattr(part, name).shape[0] == 5 * rows, name
            torch.testing.assert_close(getattr(part, name), value[3 * rows : 8 * rows])
