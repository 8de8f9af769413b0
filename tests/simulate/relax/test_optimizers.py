"""Batched LBFGS/FIRE against ASE's optimisers (EMT forces) and against a dense LBFGS."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import add_adsorbate, bulk, fcc111
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.optimize import FIRE, LBFGS
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.simulate.relax.optimizers import (
    BatchedFIRE,
    BatchedLBFGS,
    lbfgs_direction,
    make_optimizer,
    make_relax_optimizer,
)
from eqv2.simulate.relax.segments import Segments


def _emt_structures():
    """Three small EMT systems of different sizes, one with fixed atoms, all off-minimum."""
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    add_adsorbate(slab, "O", 1.6, "fcc")
    slab.set_constraint(FixAtoms(indices=[a.index for a in slab if a.tag == 3]))
    cluster = bulk("Pt", "fcc", a=3.9, cubic=True).repeat((2, 1, 1))
    alloy = fcc111("Au", (2, 2, 2), vacuum=4.0)
    alloy.numbers[[0, 5]] = 29
    for k, atoms in enumerate((slab, cluster, alloy)):
        atoms.rattle(0.08, seed=k)
    return [slab, cluster, alloy]


def _ase_path(atoms, optimizer, n_steps):
    atoms = atoms.copy()
    atoms.calc = EMT()
    path = [atoms.positions.copy()]
    optimizer = optimizer(atoms)
    optimizer.attach(lambda: path.append(atoms.positions.copy()))
    optimizer.run(fmax=1e-9, steps=n_steps)
    return np.array(path[1:])  # ASE also records the start once more before the first step


def _batched_paths(opt, structures, join, n_steps):
    """Drive ``opt`` with EMT forces; structure k joins at engine step join[k], takes n_steps[k]."""
    work = [a.copy() for a in structures]
    for atoms in work:
        atoms.calc = EMT()
    paths = [[a.positions.copy()] for a in work]
    taken = [0] * len(work)
    active: list[int] = []
    t = 0
    while any(taken[k] < n_steps[k] for k in range(len(work))):
        new = [k for k in range(len(work)) if join[k] == t]
        active += new
        opt.add([len(work[k]) for k in new])
        done = np.array([taken[k] >= n_steps[k] for k in active], dtype=bool)
        if done.any():
            opt.keep(~done, Segments([len(work[k]) for k in active]))
            active = [k for k, d in zip(active, done, strict=True) if not d]
        if active:
            seg = Segments([len(work[k]) for k in active])
            positions = np.concatenate([work[k].positions for k in active])
            forces = np.concatenate([work[k].get_forces() for k in active])  # constraints applied
            for k, dr in zip(active, seg.split(opt.step(positions, forces, seg)), strict=True):
                work[k].positions = work[k].positions + dr
                paths[k].append(work[k].positions.copy())
                taken[k] += 1
        t += 1
    return [np.array(p) for p in paths]


OC20_LBFGS = dict(maxstep=0.04, memory=50, damping=1.0, alpha=70.0)


@pytest.mark.parametrize(
    ("optimizer", "make_ase"),
    [
        (
            lambda: BatchedLBFGS(memory=4),
            lambda a: LBFGS(a, logfile=None, **{**OC20_LBFGS, "memory": 4}),
        ),
        (BatchedLBFGS, lambda a: LBFGS(a, logfile=None, **OC20_LBFGS)),
        (BatchedFIRE, lambda a: FIRE(a, logfile=None)),
    ],
    ids=["lbfgs-memory4", "lbfgs-oc20", "fire"],
)
def test_steps_match_ase_with_structures_joining_and_leaving(optimizer, make_ase):
    """Same positions as ASE step by step, although structures join late and leave early."""
    structures = _emt_structures()
    join, n_steps = [0, 3, 1], [12, 9, 14]  # memory 4 wraps the history ring several times
    paths = _batched_paths(optimizer(), structures, join, n_steps)
    for atoms, path, n in zip(structures, paths, n_steps, strict=True):
        expected = _ase_path(atoms, make_ase, n)
        assert len(path) == n + 1
        np.testing.assert_allclose(path, expected, rtol=0, atol=1e-10)
    fixed = structures[0].constraints[0].index
    assert len(fixed) and (paths[0][:, fixed] == paths[0][0, fixed]).all()


def _dense_direction(gradient, pairs, h0):
    """-H g with H from the BFGS inverse update applied to h0·I over ``pairs`` (oldest first)."""
    n = gradient.size
    h = h0 * np.eye(n)
    for s, y in pairs:
        s, y = s.ravel(), y.ravel()
        rho = 1.0 / (y @ s)
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    return -(h @ gradient.ravel()).reshape(-1, 3)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    history=st.integers(0, 5),
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_two_loop_recursion_equals_dense_bfgs_update(sizes, history, seed, data):
    """On random quadratics, the batched two-loop recursion equals the dense inverse update."""
    rng = np.random.default_rng(seed)
    counts = np.array([data.draw(st.integers(0, history)) for _ in sizes])
    seg = Segments(sizes)
    n = seg.n_rows
    s = rng.normal(size=(history, n, 3))
    y = np.zeros_like(s)
    for rows in seg.split(np.arange(n)):
        m = rng.normal(size=(3 * len(rows), 3 * len(rows)))
        hessian = m @ m.T + 3 * len(rows) * np.eye(3 * len(rows))  # positive definite
        for k in range(history):
            y[k, rows] = (hessian @ s[k, rows].ravel()).reshape(-1, 3)
    rho = np.stack([1.0 / seg.dot(y[k], s[k]) for k in range(history)]) if history else None
    rho = rho if rho is not None else np.zeros((0, len(sizes)))
    for b, rows in enumerate(seg.split(np.arange(n))):  # pairs a structure does not own: junk
        s[: history - counts[b], rows] = rng.normal(size=(history - counts[b], len(rows), 3))
    gradient = rng.normal(size=(n, 3))
    got = lbfgs_direction(gradient, s, y, rho, counts, seg, h0=1 / 70)
    for b, rows in enumerate(seg.split(np.arange(n))):
        pairs = [(s[k, rows], y[k, rows]) for k in range(history - counts[b], history)]
        expected = _dense_direction(gradient[rows], pairs, 1 / 70)
        np.testing.assert_allclose(got[rows], expected, rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_steps_are_bounded_and_zero_force_atoms_stay(sizes, seed):
    """LBFGS: no atom moves more than maxstep; FIRE: no structure moves more than maxstep."""
    rng = np.random.default_rng(seed)
    seg = Segments(sizes)
    forces = rng.normal(scale=10.0, size=(seg.n_rows, 3))
    still = rng.random(seg.n_rows) < 0.3
    forces[still] = 0.0
    lbfgs, fire = BatchedLBFGS(), BatchedFIRE()
    lbfgs.add(sizes)
    fire.add(sizes)
    positions = rng.normal(size=(seg.n_rows, 3))
    for _ in range(3):
        dr = lbfgs.step(positions, forces, seg)
        assert (seg.max_norm(dr) <= 0.04 + 1e-12).all()
        assert (dr[still] == 0).all()
        dr = fire.step(positions, forces, seg)
        assert (np.sqrt(seg.dot(dr, dr)) <= 0.2 + 1e-12).all()
        assert (dr[still] == 0).all()
        positions = positions + dr
        forces = np.where(still[:, None], 0.0, rng.normal(scale=10.0, size=forces.shape))


def test_make_relax_optimizer_names_and_errors():
    assert isinstance(make_relax_optimizer("LBFGS"), BatchedLBFGS)
    assert isinstance(make_relax_optimizer("fire", dt=0.05), BatchedFIRE)
    with pytest.raises(ValueError, match="optimizer='bfgs'.*lbfgs, fire"):
        make_relax_optimizer("bfgs")
    with pytest.raises(ValueError, match="maxstep"):
        BatchedLBFGS(maxstep=2.0)
    with pytest.raises(ValueError, match="memory"):
        BatchedLBFGS(memory=0)


def test_make_optimizer_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="make_relax_optimizer"):
        assert isinstance(make_optimizer("fire", dt=0.05), BatchedFIRE)
