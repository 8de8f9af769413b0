"""Small slabs for the AdsorbML tests (OC20 conventions: tags 1 free, 0 fixed)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc100, fcc111
from ase.constraints import FixAtoms


def tagged_slab(builder=fcc111, size=(2, 2, 3), symbol="Cu", free_layers=1, **kw) -> Atoms:
    """An ASE slab with its top ``free_layers`` layers tagged 1 and free, the rest tag 0 fixed."""
    slab = builder(symbol, size, vacuum=6.0, **kw)
    layer = slab.get_tags()  # ASE: 1 = top layer
    free = layer <= free_layers
    slab.set_tags(np.where(free, 1, 0))
    slab.set_constraint(FixAtoms(mask=~free))
    slab.info.pop("adsorbate_info", None)  # ASE's site table: not needed, not extxyz-writable
    return slab


@pytest.fixture
def cu111() -> Atoms:
    return tagged_slab(fcc111)


@pytest.fixture
def cu100() -> Atoms:
    return tagged_slab(fcc100)
