"""The tiny energy-conserving model of the relaxation tests (see conftest.py for why seed 0)."""

from __future__ import annotations

import pytest
import torch
from ase import Atoms

from eqv2.data.generate import generate_dataset
from eqv2.model import Potential
from tests.benchmark_module import load_benchmark
from tests.tiny import TINY_MODEL, tiny_model

#: the shared tiny model at lmax 1 on a 6×6 grid, short cutoff, −dE/dx forces
RELAX_VARIANT = dict(
    lmax_list=[1], grid_resolution=6, max_radius=3.5, max_neighbors=500, direct_forces=False
)
#: its whole config (benchmarks/bench_relax.py builds it)
RELAX_MODEL = {**TINY_MODEL, **RELAX_VARIANT}


def make_potential(dtype: torch.dtype = torch.float64, **overrides) -> Potential:
    """The tiny conservative model (seed 0), energies scaled so forces are ~0.2-0.6 eV/Å."""
    model = tiny_model(**{**RELAX_VARIANT, **overrides})
    return Potential(model, normalizers={"energy": {"std": 2.0}}).to(dtype).eval()


def generated_systems(n: int = 8) -> list[Atoms]:
    """``n`` generated initial structures (13-20 atoms, bottom 2 of 3 layers fixed, tags 0/1/2)."""
    ds = generate_dataset(n, seed=1, relax_steps=0, rattle_frames=0, sizes=((2, 2),), layers=(3,))
    return [s.initial for s in ds.systems]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a few atoms run faster on one thread (and do not fight other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def strained_bulk() -> list[Atoms]:
    """Eight bulk crystals (1-8 atoms, 7 compositions), strained by up to 3 % and rattled: the
    set of the materials workflow example (benchmarks/materials_workflow.py)."""
    return load_benchmark("materials_workflow").bulk_crystals()


def ase_relax(potential, atoms, optimizer, fmax, steps, cell_options=None):
    """ASE's LBFGS (OC20 settings) or FIRE with ``EqV2Calculator``, on a copy of ``atoms``.

    ``cell_options``: relax the cell too, through ``FrechetCellFilter(**cell_options)``.
    Returns the relaxed copy, whether it converged, and the steps taken.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE, LBFGS

    from eqv2.simulate import EqV2Calculator

    atoms = atoms.copy()
    atoms.calc = EqV2Calculator(potential)
    target = atoms if cell_options is None else FrechetCellFilter(atoms, **cell_options)
    if optimizer == "lbfgs":
        opt = LBFGS(target, maxstep=0.04, memory=50, damping=1.0, alpha=70.0, logfile=None)
    else:
        opt = FIRE(target, logfile=None)
    converged = opt.run(fmax=fmax, steps=steps)
    return atoms, converged, opt.nsteps
