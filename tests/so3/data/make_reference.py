"""Regenerate ``reference.npz``: cross-check values from e3nn 0.6.0 and fairchem-core 1.10.

Run with an environment that has both installed (not needed for the tests themselves):

    python tests/so3/data/make_reference.py
"""

from pathlib import Path

import numpy as np
import torch
from e3nn import o3
from fairchem.core.models.equiformer_v2.so3 import SO3_Grid, SO3_Rotation

torch.set_default_dtype(torch.float64)
torch.manual_seed(1234)

# spherical harmonics up to l=12 at a few points, including the poles
points = torch.cat([torch.randn(3, 3), torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])])
sh = o3.spherical_harmonics(list(range(13)), points, normalize=True, normalization="integral")

# fairchem's Wigner-D (lmax=4) for a random rotation and two with R y = -y, R y = +y
rotations = torch.stack(
    [
        o3.rand_matrix(),
        o3.matrix_x(torch.tensor(np.pi)) @ o3.matrix_y(torch.tensor(0.4)),
        o3.matrix_y(torch.tensor(1.1)),
    ]
)
rot = SO3_Rotation(4)
rot.device = "cpu"
wigner = rot.RotationToWignerDMatrix(rotations, 0, 4)

# e3nn/fairchem grid matrices in float64, integral normalisation, default resolution
grid = SO3_Grid(3, 1, normalization="integral")

np.savez_compressed(
    Path(__file__).with_name("reference.npz"),
    sh_points=points.numpy(),
    sh_values=sh.numpy(),
    rotations=rotations.numpy(),
    wigner_lmax4=wigner.numpy(),
    grid_l3_m1_integral_to=grid.to_grid_mat.numpy(),
    grid_l3_m1_integral_from=grid.from_grid_mat.numpy(),
)
