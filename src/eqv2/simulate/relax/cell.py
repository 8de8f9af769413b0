"""Variable-cell relaxation: positions and cell as one set of degrees of freedom, batched.

The degrees of freedom are those of ASE's ``FrechetCellFilter``. With ``C0`` the cell a
structure started from (rows are lattice vectors) and ``C`` the current one, the deformation
gradient is ``F = (C0⁻¹ C)ᵀ``, so ``C = C0 Fᵀ``. The optimiser of a structure with n atoms sees
n + 3 rows of 3:

* atoms: the positions pulled back to the starting cell, ``x_i = F⁻¹ r_i``; their
  generalised forces are ``Fᵀ f_i`` (the forces in those coordinates);
* cell: ``c · log F`` with the scale ``c`` (``exp_cell_factor``, default n, so that cell
  rows move about as far as atoms do); their generalised forces are ``G / c`` with
  ``G = L*(log F, W F⁻ᵀ)``, the derivative of ``−(E + pV)`` with respect to ``log F``:
  ``W = −V (σ + p I)`` is the virial (σ the stress in ASE's sign, p the external pressure)
  and ``L*(A, U) = L(Aᵀ, U)`` the adjoint of the Fréchet derivative of the matrix exponential.

At ``F = I`` the cell rows are ``−V (σ + p I) / n``, so a force threshold ``fmax`` on them
stops the cell once every row of ``σ + p I`` is below ``fmax · n / V`` (eV/Å³).

Options as ASE names them: ``hydrostatic_strain`` replaces the virial by its trace/3 on the
diagonal (the cell keeps its shape), ``mask`` zeroes strain components (Voigt order xx yy zz
yz xz xy, or a 3×3 array), ``constant_volume`` removes the trace of ``G`` (the volume is kept
to first order). Everything is vectorised over the structures of a batch: ``(B, 3, 3)`` stacks
and the atoms of all structures laid end to end.

Runaway guard: a model whose stress never vanishes (an untrained stress head gives a constant
one) makes a cell grow or shrink without bound. A structure whose next cell would leave
``volume_window`` (a multiple of its starting volume), or that one step would stretch along a
principal axis by more than ``exp(max_strain_step)``, is stopped as failed
(:meth:`CellFilter.runaway`) while the rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms

from eqv2.graph import structure_label
from eqv2.simulate.relax.segments import Segments

__all__ = [
    "CellFilter",
    "CellLayout",
    "exp_frechet_adjoint",
    "matrix_exp",
    "matrix_log",
]

#: Rows the cell adds to a structure's degrees of freedom.
CELL_ROWS = 3

_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def matrix_exp(a: np.ndarray) -> np.ndarray:
    """Matrix exponential of a (..., k, k) float64 stack (torch's scaling and squaring)."""
    return torch.linalg.matrix_exp(torch.from_numpy(np.ascontiguousarray(a, np.float64))).numpy()


def _sqrtm(a: np.ndarray, tol: float = 1e-15, max_iter: int = 100) -> np.ndarray:
    """Principal square roots of a (B, 3, 3) stack (Denman-Beavers iteration)."""
    y, z = a.copy(), np.broadcast_to(np.eye(3), a.shape).copy()
    for _ in range(max_iter):
        y_next = 0.5 * (y + np.linalg.inv(z))
        z = 0.5 * (z + np.linalg.inv(y))
        change = np.abs(y_next - y).max()
        y = y_next
        if change <= tol * max(1.0, np.abs(y).max()):
            break
    return y


def matrix_log(a: np.ndarray) -> np.ndarray:
    """Principal logarithm of a (B, 3, 3) stack with no eigenvalue on the closed negative axis.

    Inverse scaling and squaring: square roots until each matrix is within 0.05 of the identity
    (Frobenius norm), then the series ``log(I + E) = 2 Σ z^(2j+1)/(2j+1)`` with
    ``z = E (2I + E)⁻¹`` (``|z| < 0.026``: eight terms reach float64 round-off), times ``2^k``.
    """
    x = np.array(a, dtype=np.float64, copy=True).reshape(-1, 3, 3)
    eye = np.eye(3)
    halvings = np.zeros(len(x))
    for _ in range(60):
        far = np.linalg.norm(x - eye, axis=(1, 2)) > 0.05
        if not far.any():
            break
        x[far] = _sqrtm(x[far])
        halvings[far] += 1
    e = x - eye
    z = np.linalg.solve((2 * eye + e).transpose(0, 2, 1), e.transpose(0, 2, 1)).transpose(0, 2, 1)
    z2 = z @ z
    term, log = z.copy(), z.copy()
    for j in range(1, 8):
        term = term @ z2
        log += term / (2 * j + 1)
    return (2.0 * 2.0**halvings)[:, None, None] * log


def exp_frechet_adjoint(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``L(aᵀ, u)``: the adjoint of the Fréchet derivative of exp at ``a``, applied to ``u``.

    ``⟨L(a, e), u⟩ = ⟨e, L(aᵀ, u)⟩`` for every direction ``e`` (Frobenius product), so the nine
    directional derivatives ASE takes one by one are a single derivative here, read off the
    upper-right block of ``exp([[aᵀ, u], [0, aᵀ]])`` (u is scaled to unit norm first, then back,
    so the block's accuracy does not depend on its size). Stacks (B, 3, 3).
    """
    scale = np.linalg.norm(u, axis=(1, 2))
    scale = np.where(scale > 0, scale, 1.0)[:, None, None]
    block = np.zeros((len(a), 6, 6))
    at = np.swapaxes(a, 1, 2)
    block[:, :3, :3] = at
    block[:, 3:, 3:] = at
    block[:, :3, 3:] = u / scale
    return matrix_exp(block)[:, :3, 3:] * scale


class CellLayout:
    """Where each structure's atom and cell rows sit among the optimiser's rows.

    Structure b owns ``n_b + 3`` consecutive rows: its atoms, then its three cell rows.

    Args:
        atoms: the atom layout of the batch.
    """

    def __init__(self, atoms: Segments) -> None:
        self.atoms = atoms
        self.rows = Segments(atoms.counts + CELL_ROWS)
        #: (N,) row of each atom; (B, 3) rows of each cell.
        self.atom_rows = self.rows.starts[atoms.index] + (
            np.arange(atoms.n_rows) - atoms.starts[atoms.index]
        )
        self.cell_rows = (self.rows.starts + atoms.counts)[:, None] + np.arange(CELL_ROWS)

    def join(self, atom_part: np.ndarray, cell_part: np.ndarray) -> np.ndarray:
        """(R, 3) rows from (N, 3) atom rows and (B, 3, 3) cell rows."""
        out = np.empty((self.rows.n_rows, 3))
        out[self.atom_rows] = atom_part
        out[self.cell_rows] = cell_part
        return out

    def row_mask(self, atom_mask: np.ndarray) -> np.ndarray:
        """(R,) mask from an (N,) mask over atoms; cell rows are True."""
        out = np.ones(self.rows.n_rows, dtype=bool)
        out[self.atom_rows] = atom_mask
        return out

    def part(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (N, 3) atom rows and (B, 3, 3) cell rows of an (R, 3) array."""
        return rows[self.atom_rows], rows[self.cell_rows]


def _mask3x3(mask: object) -> np.ndarray:
    array = np.asarray(mask, dtype=float)
    if array.shape == (3, 3):
        if not np.array_equal(array, array.T) or not np.isin(array, (0.0, 1.0)).all():
            raise ValueError(f"mask={mask!r}: a 3x3 mask must be symmetric with 0/1 entries.")
        return array
    if array.shape == (6,):
        if not np.isin(array, (0.0, 1.0)).all():
            raise ValueError(f"mask={mask!r}: the entries must be booleans (or 0/1).")
        full = np.zeros((3, 3))
        for value, (i, j) in zip(array, _VOIGT, strict=True):
            full[i, j] = full[j, i] = value
        return full
    raise ValueError(
        f"mask={mask!r}: give 6 booleans in Voigt order (xx, yy, zz, yz, xz, xy) or a 3x3 "
        "array; True means the component relaxes."
    )


@dataclass(frozen=True)
class CellFilter:
    """Relax the cell together with the positions (ASE's ``FrechetCellFilter``, batched).

    Args:
        pressure: external scalar pressure in eV/Å³ (1 GPa = ``ase.units.GPa`` ≈ 0.00624 eV/Å³);
            the relaxation minimises the enthalpy ``E + pV`` and ends with stress ``σ ≈ −p I``.
        hydrostatic_strain: only scale the cell (its shape is kept).
        constant_volume: keep the volume (to first order: ASE's projection of the cell force).
        mask: which strain components relax: 6 booleans in Voigt order (xx, yy, zz, yz, xz,
            xy) or a symmetric 3×3 array (kept as the 6 booleans); None relaxes all.
        exp_cell_factor: scale of the cell rows; None uses each structure's atom count.
        volume_window: (low, high): a structure whose cell volume would leave
            [low, high] × its starting volume is stopped as failed (a runaway cell).
        max_strain_step: a structure that one optimiser step would stretch or compress along a
            principal axis by more than a factor ``exp(max_strain_step)`` is stopped as failed.
    """

    pressure: float = 0.0
    hydrostatic_strain: bool = False
    constant_volume: bool = False
    mask: tuple[bool, ...] | np.ndarray | None = None
    exp_cell_factor: float | None = None
    volume_window: tuple[float, float] = (0.25, 4.0)
    max_strain_step: float = 0.5
    mask3x3: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.volume_window)
        if not 0 < low < 1 < high < np.inf:
            raise ValueError(
                f"volume_window={self.volume_window!r}: give (low, high) with 0 < low < 1 < high, "
                "as multiples of each structure's starting volume, e.g. (0.25, 4.0)."
            )
        object.__setattr__(self, "volume_window", (low, high))
        if not 0 < self.max_strain_step < np.inf:
            raise ValueError(
                f"max_strain_step={self.max_strain_step}: must be a positive number (the largest "
                "|log| of a principal stretch one step may apply, e.g. 0.5)."
            )
        if not np.isfinite(self.pressure):
            raise ValueError(f"pressure={self.pressure}: must be a finite number in eV/Å³.")
        if self.exp_cell_factor is not None and not self.exp_cell_factor > 0:
            raise ValueError(
                f"exp_cell_factor={self.exp_cell_factor}: must be positive, or None for the "
                "number of atoms of each structure."
            )
        if self.hydrostatic_strain and self.constant_volume:
            raise ValueError(
                "hydrostatic_strain with constant_volume leaves the cell nothing to relax; "
                "choose one (--hydrostatic or --constant-volume)."
            )
        mask3x3 = np.ones((3, 3)) if self.mask is None else _mask3x3(self.mask)
        object.__setattr__(self, "mask3x3", mask3x3)
        if self.mask is not None:  # one hashable, comparable form: Voigt booleans
            object.__setattr__(self, "mask", tuple(bool(mask3x3[i, j]) for i, j in _VOIGT))

    def factor(self, n_atoms: int) -> float:
        """The cell scale ``c`` of a structure with ``n_atoms`` atoms."""
        return float(n_atoms) if self.exp_cell_factor is None else float(self.exp_cell_factor)

    def check(self, index: int, atoms: Atoms) -> None:
        """Raise ValueError (naming the structure) if its cell cannot be relaxed.

        Every axis must be periodic, or open axes must be masked out entirely (a slab with
        ``mask=(1, 1, 0, 0, 0, 1)``), and the cell must have a volume.
        """
        label = structure_label(index, atoms)
        open_axes = [k for k in range(3) if not atoms.pbc[k]]
        for k in open_axes:
            if self.mask3x3[k].any() or self.hydrostatic_strain:
                raise ValueError(
                    f"{label} is not periodic along axis {'xyz'[k]} (pbc={atoms.pbc.tolist()}); "
                    "its stress there is not defined, so its cell cannot relax along it. Make it "
                    "periodic, or for a slab relax only the in-plane strain (mask="
                    "(1, 1, 0, 0, 0, 1) for an open z axis, no hydrostatic_strain)."
                )
        volume = abs(np.linalg.det(atoms.cell.array))
        if not volume > 1e-6:
            raise ValueError(
                f"{label} has a cell of volume {volume:.3g} Å³; a variable-cell relaxation needs "
                "three independent cell vectors."
            )

    def runaway(
        self, orig_cells: np.ndarray, cells: np.ndarray, new_cells: np.ndarray
    ) -> list[str | None]:
        """Why each structure's step from ``cells`` to ``new_cells`` (B, 3, 3) is refused, or
        None: the new volume leaves `volume_window` × the starting volume, or the step's
        largest principal stretch exceeds ``exp(max_strain_step)``. The reasons name the
        numbers and the fix; the caller adds the structure's name."""
        v0 = np.abs(np.linalg.det(orig_cells))
        v_new = np.abs(np.linalg.det(new_cells))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = v_new / v0
            step = self.deformation(cells, new_cells)  # of this step alone
            stretch = np.abs(np.log(np.linalg.svd(step, compute_uv=False))).max(axis=1)
        low, high = self.volume_window
        advice = (
            "The model's stress does not vanish near this structure (an untrained or "
            "out-of-domain stress head gives a stress that never does): check it with "
            "Potential.predict(atoms, stress=True), and relax the cell with a model trained "
            "on stress (or with conservative forces)"
        )
        reasons: list[str | None] = []
        for k in range(len(ratio)):
            if not low <= ratio[k] <= high:  # NaN (a degenerate cell) fails too
                reasons.append(
                    f"its cell volume would reach {ratio[k]:.3g} × its starting volume "
                    f"({v_new[k]:.4g} Å³ from {v0[k]:.4g} Å³), outside CellFilter.volume_window "
                    f"[{low:g}, {high:g}]: the cell is running away. {advice}; widen "
                    "volume_window only if such a change is expected."
                )
            elif not stretch[k] <= self.max_strain_step:
                reasons.append(
                    f"one step would stretch its cell by a factor {np.exp(stretch[k]):.3g} along "
                    f"a principal axis, more than CellFilter.max_strain_step="
                    f"{self.max_strain_step:g} allows (a factor {np.exp(self.max_strain_step):.3g}"
                    f"). {advice}; raise max_strain_step only if such steps are expected."
                )
            else:
                reasons.append(None)
        return reasons

    # -- batched transforms: B structures, atoms laid end to end -------------------------------

    @staticmethod
    def deformation(orig_cells: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """(B, 3, 3) deformation gradients ``F = (C0⁻¹ C)ᵀ``."""
        return np.swapaxes(np.linalg.solve(orig_cells, cells), 1, 2)

    def dof(
        self,
        positions: np.ndarray,
        cells: np.ndarray,
        orig_cells: np.ndarray,
        factors: np.ndarray,
        layout: CellLayout,
    ) -> np.ndarray:
        """(R, 3) coordinates the optimiser moves: pulled-back positions, then ``c · log F``."""
        f = self.deformation(orig_cells, cells)
        f_inv = np.linalg.inv(f)[layout.atoms.index]
        pulled = np.einsum("nij,nj->ni", f_inv, positions)
        return layout.join(pulled, matrix_log(f) * factors[:, None, None])

    def forces(
        self,
        forces: np.ndarray,
        stresses: np.ndarray,
        cells: np.ndarray,
        orig_cells: np.ndarray,
        factors: np.ndarray,
        layout: CellLayout,
    ) -> np.ndarray:
        """(R, 3) generalised forces (minus the gradient of ``E + pV`` in :meth:`dof`'s rows).

        ``forces`` (N, 3) in eV/Å, already zero on fixed atoms; ``stresses`` (B, 3, 3) in eV/Å³.
        """
        f = self.deformation(orig_cells, cells)
        volumes = np.abs(np.linalg.det(cells))[:, None, None]
        virial = -volumes * (stresses + self.pressure * np.eye(3))
        if self.hydrostatic_strain:
            virial = np.trace(virial, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
        virial = virial * self.mask3x3
        pulled_virial = virial @ np.linalg.inv(np.swapaxes(f, 1, 2))
        g = exp_frechet_adjoint(matrix_log(f), pulled_virial)
        if self.constant_volume:
            g = g - np.trace(g, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3)
        atom_part = np.einsum("nj,nji->ni", forces, f[layout.atoms.index])
        return layout.join(atom_part, g / factors[:, None, None])

    def positions_and_cells(
        self, dof: np.ndarray, orig_cells: np.ndarray, factors: np.ndarray, layout: CellLayout
    ) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3) and cells (B, 3, 3) for optimiser coordinates ``dof`` (R, 3).

        Masked strain components stay at their starting values, as in ASE.
        """
        pulled, log_f = layout.part(dof)
        f = matrix_exp(log_f / factors[:, None, None])
        deform = np.eye(3) + (np.swapaxes(f, 1, 2) - np.eye(3)) * self.mask3x3
        cells = orig_cells @ deform
        positions = np.einsum("nj,nji->ni", pulled, deform[layout.atoms.index])
        return positions, cells
