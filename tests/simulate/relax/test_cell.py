"""Cell degrees of freedom: matrix functions, and the transforms against ASE's FrechetCellFilter."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import FrechetCellFilter
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm, expm_frechet, logm

from eqv2.simulate.relax.cell import (
    CellFilter,
    CellLayout,
    exp_frechet_adjoint,
    matrix_exp,
    matrix_log,
)
from eqv2.simulate.relax.segments import Segments

# ASE's filter takes scipy's logm of n·F, which warns about its own accuracy (~1e-12)
pytestmark = pytest.mark.filterwarnings("ignore:logm result may be inaccurate")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), size=st.sampled_from([0.01, 0.3, 1.0]))
def test_matrix_log_inverts_exp_and_equals_scipy(seed, size):
    """Cell logs: |log F| ~ 0.01 (a relaxation) to 1 (a cell stretched by e)."""
    rng = np.random.default_rng(seed)
    a = size * rng.normal(size=(4, 3, 3))
    a = np.where(size >= 1, (a + np.swapaxes(a, 1, 2)) / 2, a)  # large: keep the log principal
    f = matrix_exp(a)
    np.testing.assert_allclose(f, np.stack([expm(x) for x in a]), rtol=1e-10, atol=1e-12)
    log = matrix_log(f)
    np.testing.assert_allclose(log, a, atol=1e-12)
    np.testing.assert_allclose(log, np.stack([logm(x) for x in f]).real, atol=1e-11)


def test_matrix_log_of_identity_is_exactly_zero():
    assert (matrix_log(np.stack([np.eye(3)] * 2)) == 0).all()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_frechet_adjoint_equals_the_nine_directional_derivatives(seed):
    """<L(a, e_mn), u> for every direction (what ASE loops over) in one derivative."""
    rng = np.random.default_rng(seed)
    a, u = 0.3 * rng.normal(size=(3, 3, 3)), 40 * rng.normal(size=(3, 3, 3))
    expected = np.zeros_like(a)
    for b, m, n in np.ndindex(3, 3, 3):
        direction = np.zeros((3, 3))
        direction[m, n] = 1.0
        expected[b, m, n] = np.sum(expm_frechet(a[b], direction, compute_expm=False) * u[b])
    np.testing.assert_allclose(exp_frechet_adjoint(a, u), expected, rtol=1e-12, atol=1e-11)


def test_layout_puts_cell_rows_after_each_structures_atoms():
    layout = CellLayout(Segments([2, 1]))
    np.testing.assert_array_equal(layout.atom_rows, [0, 1, 5])
    np.testing.assert_array_equal(layout.cell_rows, [[2, 3, 4], [6, 7, 8]])
    atoms, cells = np.arange(9.0).reshape(3, 3), -np.arange(18.0).reshape(2, 3, 3)
    joined = layout.join(atoms, cells)
    back = layout.part(joined)
    np.testing.assert_array_equal(back[0], atoms)
    np.testing.assert_array_equal(back[1], cells)
    np.testing.assert_array_equal(layout.row_mask(np.array([True, False, True])), [1, 0] + [1] * 7)


OPTIONS = [
    {},
    {"hydrostatic_strain": True},
    {"constant_volume": True},
    {"mask": (True, True, False, False, False, True)},
    {"scalar_pressure": 0.01},
    {"exp_cell_factor": 2.5},
]


def _ours(options: dict) -> CellFilter:
    renamed = {"scalar_pressure": "pressure"}
    return CellFilter(**{renamed.get(k, k): v for k, v in options.items()})


def _emt_systems():
    """Two rattled EMT crystals of different sizes."""
    systems = [bulk("Cu", "fcc", a=3.7, cubic=True).repeat((1, 1, 2)), bulk("Al", "fcc", a=4.1)]
    for atoms in systems:
        atoms.rattle(0.05, seed=1)
    return systems


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_transforms_equal_ase_frechet_cell_filter(options):
    """Coordinates, generalised forces and the inverse map of two structures at once."""
    filters, atoms_list = [], []
    rng = np.random.default_rng(3)
    for atoms in _emt_systems():
        atoms.calc = EMT()
        fcf = FrechetCellFilter(atoms, **options)
        x = fcf.get_positions()
        x[-3:] += 0.05 * rng.normal(size=(3, 3))  # deform the cell away from the start
        x[:-3] += 0.02 * rng.normal(size=(len(atoms), 3))
        fcf.set_positions(x)
        filters.append(fcf)
        atoms_list.append(atoms)
    ours = _ours(options)
    layout = CellLayout(Segments([len(a) for a in atoms_list]))
    orig = np.stack([f.orig_cell for f in filters])
    cells = np.stack([a.cell.array for a in atoms_list])
    factors = np.array([float(options.get("exp_cell_factor", len(a))) for a in atoms_list])
    # ASE's cell coordinates carry a constant c·log(n)·I (it takes the log of n·F): a shift
    # that optimisers never see, since they only use differences.
    shift = np.concatenate(
        [
            np.vstack([np.zeros((len(a), 3)), c * np.log(len(a)) * np.eye(3)])
            for a, c in zip(atoms_list, factors, strict=True)
        ]
    )

    positions = np.concatenate([a.positions for a in atoms_list])
    dof = ours.dof(positions, cells, orig, factors, layout)
    expected = np.concatenate([f.get_positions() for f in filters])
    np.testing.assert_allclose(dof + shift, expected, atol=1e-12)

    forces = np.concatenate([a.get_forces() for a in atoms_list])
    stresses = np.stack([a.get_stress(voigt=False) for a in atoms_list])
    generalised = ours.forces(forces, stresses, cells, orig, factors, layout)
    expected = np.concatenate([f.get_forces() for f in filters])
    np.testing.assert_allclose(generalised, expected, atol=1e-13)

    moved = dof + 0.01 * rng.normal(size=dof.shape)
    new_positions, new_cells = ours.positions_and_cells(moved, orig, factors, layout)
    for k, f in enumerate(filters):
        rows = slice(layout.rows.starts[k], layout.rows.starts[k] + layout.rows.counts[k])
        f.set_positions(moved[rows] + shift[rows])
    # ASE reaches the same point through exp(c·log(n)·I + ...) / n: ~1e-12 of its own noise
    np.testing.assert_allclose(new_cells, np.stack([a.cell.array for a in atoms_list]), atol=1e-11)
    np.testing.assert_allclose(
        new_positions, np.concatenate([a.positions for a in atoms_list]), atol=1e-11
    )


def test_cell_rows_at_the_start_are_the_virial_per_atom():
    """At F = I the cell rows are −V (σ + p I) / n: the stress a force threshold stands for."""
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.calc = EMT()
    stress = atoms.get_stress(voigt=False)
    layout = CellLayout(Segments([len(atoms)]))
    cell = atoms.cell.array[None]
    rows = CellFilter(pressure=0.02).forces(
        atoms.get_forces(), stress[None], cell, cell, np.array([4.0]), layout
    )[layout.cell_rows[0]]
    np.testing.assert_allclose(rows, -atoms.get_volume() * (stress + 0.02 * np.eye(3)) / 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask": (1, 1, 1)}, "6 booleans in Voigt order"),
        ({"mask": np.triu(np.ones((3, 3)))}, "symmetric"),
        ({"mask": (1, 1, 2, 0, 0, 0)}, "booleans"),
        ({"pressure": float("nan")}, "pressure"),
        ({"exp_cell_factor": 0.0}, "exp_cell_factor"),
        ({"hydrostatic_strain": True, "constant_volume": True}, "nothing to relax"),
    ],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CellFilter(**kwargs)


def test_mask_accepts_voigt_and_full_forms():
    voigt = CellFilter(mask=(True, True, False, False, False, True)).mask3x3
    np.testing.assert_array_equal(voigt, [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(CellFilter(mask=voigt).mask3x3, voigt)
    assert CellFilter(mask=voigt) == CellFilter(mask=(1, 1, 0, 0, 0, 1))
    assert CellFilter(mask=voigt).mask == (True, True, False, False, False, True)
