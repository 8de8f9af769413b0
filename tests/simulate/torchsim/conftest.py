"""Fixtures of the torch-sim tests: the tiny conservative model and small periodic cells.

torch-sim is imported inside the fixtures, so a checkout without the extra collects these
tests and each file skips with its reason (``pytest.importorskip`` at the top of the file).
"""

from __future__ import annotations

import pytest
import torch
from ase import Atoms
from ase.build import bulk

from tests.simulate.relax.tiny_relax import make_potential

#: the reason every torch-sim test gives when the extra is missing
SKIP_REASON = (
    "torch-sim is not installed: pip install 'eqv2[torchsim]' (torch-sim-atomistic 0.3, Python "
    ">= 3.11); `make test` installs it"
)


@pytest.fixture(scope="module")
def potential64():
    """The relaxation tests' tiny conservative model (cut-off 3.5 Å), float64."""
    return make_potential(torch.float64)


@pytest.fixture(scope="module")
def model64(potential64):
    from eqv2.simulate.torchsim import EqV2TorchSimModel

    return EqV2TorchSimModel(potential64)


@pytest.fixture(scope="session")
def omat_model(checkpoints_dir):
    """The OMat24-family fixture (direct forces, stress head), float32 as released."""
    from eqv2.simulate.torchsim import EqV2TorchSimModel

    return EqV2TorchSimModel(checkpoints_dir / "omat_stress_small.pt")


def small_cells(n: int) -> list[Atoms]:
    """``n`` small rattled periodic cells of two kinds (4-atom Cu, 2-atom NaCl)."""
    cells = []
    for k in range(n):
        atoms = (
            bulk("Cu", "fcc", a=3.6, cubic=True) if k % 2 == 0 else bulk("NaCl", "rocksalt", a=4.0)
        )
        atoms.rattle(0.05, seed=k)
        cells.append(atoms)
    return cells
