"""eqv2.so3: spherical-harmonic bookkeeping, Wigner-D matrices, edge frames and sphere grids.

Layer 1 of eqv2: pure functions without parameters; constant tensors are cached.
Conventions: real spherical harmonics in e3nn's basis (polar axis +y, l=1 ordered x, y, z),
features in l-major order (index ``l**2 + m + l``), m-major order inside edge frames.
`CoefficientLayout` answers what the layers need to know about one ``(lmax, mmax)`` layout.
"""

from .coefficients import CoefficientLayout, GridMatrices
from .frames import edge_frames
from .grid import grid_resolution, s2_grid_matrices
from .harmonics import spherical_harmonics
from .layout import (
    degree_order,
    m_major_index,
    num_coefficients,
    rotate_back_rescale,
    truncated_index,
)
from .wigner import edge_rotation, wigner_d

__all__ = [
    "CoefficientLayout",
    "GridMatrices",
    "degree_order",
    "edge_frames",
    "edge_rotation",
    "grid_resolution",
    "m_major_index",
    "num_coefficients",
    "rotate_back_rescale",
    "s2_grid_matrices",
    "spherical_harmonics",
    "truncated_index",
    "wigner_d",
]
