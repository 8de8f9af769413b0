"""Position corruption (eqv2.train.corruption): who moves, by how much, and the edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111
from ase.constraints import FixAtoms
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.graph import batch_structures
from eqv2.graph.edges import edge_vectors
from eqv2.train.corruption import PositionNoise, RelaxedInterpolation

CUTOFF = 4.0


def _graph(fix_first: int = 0):
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    slab.set_constraint(FixAtoms(indices=list(range(fix_first))))
    crystal = bulk("Al", "fcc", a=4.05, cubic=True)
    return batch_structures([slab, crystal], CUTOFF, dtype=torch.float64)


def test_fixed_atoms_never_move_and_the_target_is_noise_over_std():
    graph = _graph(fix_first=4)
    forces = torch.randn(graph["pos"].shape[0], 3, dtype=torch.float64)
    torch.manual_seed(0)
    c = PositionNoise(std=0.1).corrupt(graph, forces, CUTOFF)
    fixed = graph["fixed"]
    assert fixed.sum() == 4
    assert torch.equal(c.graph["pos"][fixed], graph["pos"][fixed])
    assert not c.mask[fixed].any() and c.mask[~fixed].all()
    torch.testing.assert_close(c.graph["pos"] - graph["pos"], c.noise)
    torch.testing.assert_close(c.target, c.noise / 0.1)
    # the force encoding sees the corrupted atoms' labels only
    torch.testing.assert_close(
        c.graph["denoising_forces"][fixed], torch.zeros(4, 3, dtype=torch.float64)
    )
    torch.testing.assert_close(c.graph["denoising_forces"][~fixed], forces[~fixed])
    # the clean graph is left untouched
    assert "denoising_mask" not in graph
    # all_atoms moves the fixed ones as well
    c_all = PositionNoise(std=0.1, all_atoms=True).corrupt(graph, forces, CUTOFF)
    assert c_all.mask.all() and (c_all.noise[fixed].abs() > 0).all()


def test_noise_statistics_and_corrupt_ratio():
    torch.manual_seed(1)
    graph = _graph()
    n = graph["pos"].shape[0]
    forces = torch.zeros(n, 3, dtype=torch.float64)
    noise, masks = [], []
    spec = PositionNoise(std=0.05, corrupt_ratio=0.25)
    for _ in range(400):
        c = spec.corrupt(graph, forces, CUTOFF)
        noise.append(c.noise[c.mask])
        masks.append(c.mask.double())
        assert (c.noise[~c.mask] == 0).all()
    values = torch.cat(noise)
    assert abs(torch.cat(masks).mean().item() - 0.25) < 0.02
    assert abs(values.std().item() - 0.05) < 0.003 and abs(values.mean().item()) < 0.003


def test_sampled_sigmas_are_per_structure_and_geometric():
    torch.manual_seed(2)
    graph = _graph()
    spec = PositionNoise(std=None, fixed_std=False, std_low=0.01, std_high=1.0, num_steps=3)
    seen = set()
    for _ in range(50):
        c = spec.corrupt(graph, torch.zeros_like(graph["pos"]), CUTOFF)
        sig = c.graph["denoising_sigmas"][:, 0]
        for b in range(2):
            values = sig[graph["batch"] == b]
            assert torch.all(values == values[0])
            seen.add(round(values[0].item(), 6))
    assert seen == {0.01, 0.1, 1.0}
    assert spec.target_scale == 1.0


def test_edges_follow_the_moved_atoms_and_stretched_ones_are_dropped():
    graph = _graph()
    torch.manual_seed(3)
    c = PositionNoise(std=0.3).corrupt(graph, torch.zeros_like(graph["pos"]), CUTOFF)
    g = c.graph
    expected = edge_vectors(g["pos"], g["cell"], g["batch"], g["edge_index"], g["cell_offsets"])
    torch.testing.assert_close(g["edge_vec"], expected)
    assert g["edge_vec"].norm(dim=1).max() <= CUTOFF
    assert g["edge_index"].shape[1] == g["cell_offsets"].shape[0] == g["edge_vec"].shape[0]
    assert g["edge_index"].shape[1] < graph["edge_index"].shape[1]  # σ = 0.3 Å: some dropped


@settings(max_examples=20, deadline=None)
@given(
    std=st.floats(0.0, 2.0),
    ratio=st.one_of(st.none(), st.floats(-1.0, 2.0)),
    fixed_std=st.booleans(),
)
def test_bad_noise_settings_are_refused_with_the_key(std, ratio, fixed_std):
    ok = (not fixed_std or std > 0) and (ratio is None or 0 < ratio <= 1)
    kwargs = dict(std=std, corrupt_ratio=ratio, fixed_std=fixed_std)
    if not fixed_std:
        kwargs.update(std_low=None, std_high=None, num_steps=None)
        ok = False  # sampled σ needs std_low, std_high, num_steps
    if ok:
        PositionNoise(**kwargs)
    else:
        with pytest.raises(ValueError, match="std|corrupt_ratio"):
            PositionNoise(**kwargs)


def test_no_fixed_atoms_in_a_bulk_crystal_means_all_atoms_move():
    crystal = bulk("Al", "fcc", a=4.05, cubic=True)
    graph = batch_structures(crystal, CUTOFF, dtype=torch.float32)
    c = PositionNoise(std=0.1).corrupt(graph, torch.zeros(4, 3), CUTOFF)
    assert c.mask.all() and c.graph["pos"].dtype == torch.float32
    assert np.all(np.abs(c.noise.numpy()) > 0)


def test_relaxed_interpolation_moves_free_atoms_between_initial_and_relaxed_positions():
    graph = _graph(fix_first=4)
    n = graph["pos"].shape[0]
    torch.manual_seed(1)
    displacement = torch.randn(n, 3, dtype=torch.float64) * 0.4
    fixed = graph["fixed"]
    # without noise each moved atom lands on the segment pos -> pos + displacement
    c = RelaxedInterpolation(std=0.0, structure_prob=1.0).corrupt(graph, None, CUTOFF, displacement)
    assert torch.equal(c.mask, ~fixed) and not c.noise[fixed].any()
    torch.testing.assert_close(c.graph["pos"] - graph["pos"], c.noise)
    share = (c.noise[~fixed] * displacement[~fixed]).sum(1) / displacement[~fixed].pow(2).sum(1)
    assert ((share >= 0) & (share <= 1)).all() and share.std() > 0.1  # one λ per atom
    torch.testing.assert_close(c.noise[~fixed], share[:, None] * displacement[~fixed])
    assert "denoising_mask" not in c.graph  # a plain moved structure: no noise to predict
    # with noise: the move minus the interpolation is N(0, std^2) per component
    torch.manual_seed(2)
    big = displacement.repeat(200, 1)
    many = batch_structures([fcc111("Cu", (2, 2, 3), vacuum=6.0)] * 200, CUTOFF)
    noisy = RelaxedInterpolation(std=0.3, structure_prob=1.0, min_factor=1.0).corrupt(
        many, None, CUTOFF, big[: many["pos"].shape[0]]
    )
    assert noisy.noise.std().item() == pytest.approx(0.3, rel=0.05)
    # structure_prob: whole structures are moved or left alone
    torch.manual_seed(3)
    half = RelaxedInterpolation(std=0.3, structure_prob=0.5).corrupt(
        many, None, CUTOFF, big[: many["pos"].shape[0]]
    )
    picked = torch.zeros(200, dtype=torch.long).index_add(0, many["batch"], half.mask.long())
    assert set(picked.tolist()) == {0, 12} and 60 < int((picked > 0).sum()) < 140


def test_relaxed_interpolation_needs_the_displacement_and_sane_settings():
    graph = _graph()
    with pytest.raises(ValueError, match="needs a displacement target"):
        RelaxedInterpolation().corrupt(graph, None, CUTOFF)
    with pytest.raises(ValueError, match="structure_prob=0"):
        RelaxedInterpolation(structure_prob=0)
    with pytest.raises(ValueError, match="std=-0.1"):
        RelaxedInterpolation(std=-0.1)
