"""Batched LBFGS and FIRE: one optimiser state per structure, advanced together.

Each optimiser holds the state of B structures whose atoms are laid end to end (see
:class:`~eqv2.simulate.relax.segments.Segments`) and turns forces into displacements for all of
them at once with array operations. The maths follows ASE's ``LBFGS`` (no line search) and
``FIRE`` step for step, so a structure relaxed here and by ASE alone takes the same path up to
floating-point noise. Forces passed in must already be zero on fixed atoms (as ASE's constraints
make them); the displacement is then zero there too.

Structures join with :meth:`add` (fresh state, appended at the end) and leave with :meth:`keep`,
which is how the engine does in-flight batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from eqv2.deprecation import deprecated_alias
from eqv2.simulate.relax.segments import Segments

__all__ = [
    "OPTIMIZERS",
    "BatchedFIRE",
    "BatchedLBFGS",
    "BatchedOptimizer",
    "lbfgs_direction",
    "make_optimizer",
    "make_relax_optimizer",
]


class BatchedOptimizer(Protocol):
    """What the relaxation engine needs from an optimiser."""

    def add(self, counts: Sequence[int]) -> None:
        """Append structures with ``counts`` atoms each, with a fresh state."""

    def keep(self, keep: np.ndarray, seg: Segments) -> None:
        """Keep only the structures where ``keep`` (B,) is True; ``seg`` is the current layout."""

    def step(self, positions: np.ndarray, forces: np.ndarray, seg: Segments) -> np.ndarray:
        """(N, 3) displacement for every atom from positions and forces (N, 3)."""


def _append_rows(array: np.ndarray, rows: int, axis: int = 0) -> np.ndarray:
    shape = list(array.shape)
    shape[axis] = rows
    return np.concatenate([array, np.zeros(shape, dtype=array.dtype)], axis=axis)


def lbfgs_direction(
    gradient: np.ndarray,
    s: np.ndarray,
    y: np.ndarray,
    rho: np.ndarray,
    counts: np.ndarray,
    seg: Segments,
    h0: float,
) -> np.ndarray:
    """LBFGS search direction ``-H g`` for every structure (the two-loop recursion).

    ``H`` is the inverse-Hessian estimate built from the initial guess ``h0 · I`` and each
    structure's most recent position/gradient differences.

    Args:
        gradient: (N, 3) energy gradients (minus the forces).
        s: (K, N, 3) position differences, oldest first.
        y: (K, N, 3) gradient differences, oldest first.
        rho: (K, B) ``1 / (y·s)`` per pair and structure.
        counts: (B,) how many of the newest K pairs belong to each structure (older rows of a
            structure are ignored, whatever they hold).
        seg: layout of the N rows.
        h0: initial inverse curvature (Å²/eV), e.g. 1/70.

    Returns:
        (N, 3) the direction ``p = -H g``.
    """
    k_total = s.shape[0]
    q = gradient.copy()
    alphas = np.zeros((k_total, len(seg)))
    for k in range(k_total - 1, -1, -1):
        valid = k >= k_total - counts
        if not valid.any():
            break
        alphas[k] = np.where(valid, rho[k] * seg.dot(s[k], q), 0.0)
        q -= seg.expand(alphas[k]) * y[k]
    z = h0 * q
    for k in range(k_total):
        valid = k >= k_total - counts
        if not valid.any():
            continue
        beta = np.where(valid, rho[k] * seg.dot(y[k], z), 0.0)
        z += seg.expand(alphas[k] - beta) * s[k]
    return -z


class BatchedLBFGS:
    """Limited-memory BFGS without line search, as ASE's ``LBFGS``, for many structures.

    Defaults are the OC20 relaxation settings (fairchem's ``ml_relax``).

    Args:
        maxstep: largest displacement of any atom in one step (Å); a longer step is scaled
            down as a whole, so it keeps its direction.
        memory: number of past steps kept per structure.
        damping: factor applied to every step.
        alpha: initial curvature guess (eV/Å²); the initial inverse Hessian is ``I / alpha``.
    """

    def __init__(
        self, maxstep: float = 0.04, memory: int = 50, damping: float = 1.0, alpha: float = 70.0
    ) -> None:
        if not 0.0 < maxstep <= 1.0:
            raise ValueError(f"maxstep={maxstep} Å: must be in (0, 1] (OC20 uses 0.04).")
        if memory < 1:
            raise ValueError(f"memory={memory}: must be at least 1 (OC20 uses 50).")
        if alpha <= 0.0:
            raise ValueError(f"alpha={alpha}: the initial curvature must be positive (ASE: 70).")
        self.maxstep, self.memory, self.damping, self.alpha = maxstep, memory, damping, alpha
        # Every structure in the batch steps together, so one ring position serves all of them:
        # slot (head - 1 - k) % memory holds the k-th newest pair of every structure that has one.
        self.head = 0
        self.s = np.zeros((memory, 0, 3))
        self.y = np.zeros((memory, 0, 3))
        self.rho = np.zeros((memory, 0))
        self.counts = np.zeros(0, dtype=np.int64)  # valid pairs per structure
        self.started = np.zeros(0, dtype=bool)  # has a previous position and gradient
        self.prev_pos = np.zeros((0, 3))
        self.prev_grad = np.zeros((0, 3))

    def add(self, counts: Sequence[int]) -> None:
        """Append structures with ``counts`` atoms each, with an empty history."""
        n_new, rows = len(counts), int(np.sum(counts))
        self.s = _append_rows(self.s, rows, axis=1)
        self.y = _append_rows(self.y, rows, axis=1)
        self.rho = _append_rows(self.rho, n_new, axis=1)
        self.counts = _append_rows(self.counts, n_new)
        self.started = _append_rows(self.started, n_new)
        self.prev_pos = _append_rows(self.prev_pos, rows)
        self.prev_grad = _append_rows(self.prev_grad, rows)

    def keep(self, keep: np.ndarray, seg: Segments) -> None:
        """Drop the structures where ``keep`` is False (``seg``: the layout before dropping)."""
        rows = seg.rows(keep)
        self.s, self.y = self.s[:, rows], self.y[:, rows]
        self.rho = self.rho[:, keep]
        self.counts, self.started = self.counts[keep], self.started[keep]
        self.prev_pos, self.prev_grad = self.prev_pos[rows], self.prev_grad[rows]

    def step(self, positions: np.ndarray, forces: np.ndarray, seg: Segments) -> np.ndarray:
        """Record the last step's pair, then return the next (N, 3) displacement."""
        gradient = -forces
        started = self.started
        if started.any():
            s_new = np.where(seg.rows(started)[:, None], positions - self.prev_pos, 0.0)
            y_new = np.where(seg.rows(started)[:, None], gradient - self.prev_grad, 0.0)
            ys = seg.dot(y_new, s_new)
            # ASE divides unguarded; a zero y·s (no motion) would poison the history with inf.
            rho = np.divide(1.0, ys, out=np.zeros_like(ys), where=started & (ys != 0.0))
            self.s[self.head], self.y[self.head], self.rho[self.head] = s_new, y_new, rho
            self.head = (self.head + 1) % self.memory
            self.counts = np.where(started, np.minimum(self.counts + 1, self.memory), 0)

        n_hist = int(self.counts.max(initial=0))
        order = (self.head - n_hist + np.arange(n_hist)) % self.memory  # oldest first
        p = lbfgs_direction(
            gradient,
            self.s[order],
            self.y[order],
            self.rho[order],
            self.counts,
            seg,
            1 / self.alpha,
        )
        longest = seg.max_norm(p)
        scale = np.where(longest >= self.maxstep, self.maxstep / np.maximum(longest, 1e-300), 1.0)
        self.prev_pos, self.prev_grad = positions.copy(), gradient.copy()
        self.started = np.ones(len(seg), dtype=bool)
        return p * seg.expand(scale * self.damping)


class BatchedFIRE:
    """Fast inertial relaxation engine, as ASE's ``FIRE`` (default parameters), per structure.

    Args:
        dt: initial time step.
        maxstep: largest length of a structure's whole displacement vector in one step (Å).
        dtmax: largest time step.
        nmin: steps with power ``F·v > 0`` before the time step may grow.
        finc, fdec: time-step growth and cut factors.
        astart: mixing coefficient after a reset (and at the start).
        fa: factor applied to the mixing coefficient as the time step grows.
    """

    def __init__(
        self,
        dt: float = 0.1,
        maxstep: float = 0.2,
        dtmax: float = 1.0,
        nmin: int = 5,
        finc: float = 1.1,
        fdec: float = 0.5,
        astart: float = 0.1,
        fa: float = 0.99,
    ) -> None:
        if dt <= 0.0 or dtmax <= 0.0 or maxstep <= 0.0:
            raise ValueError(f"dt={dt}, dtmax={dtmax}, maxstep={maxstep}: all must be positive.")
        self.dt0, self.maxstep, self.dtmax, self.nmin = dt, maxstep, dtmax, nmin
        self.finc, self.fdec, self.astart, self.fa = finc, fdec, astart, fa
        self.v = np.zeros((0, 3))
        self.dt = np.zeros(0)
        self.a = np.zeros(0)
        self.n_downhill = np.zeros(0, dtype=np.int64)  # steps since the last uphill reset
        self.started = np.zeros(0, dtype=bool)

    def add(self, counts: Sequence[int]) -> None:
        """Append structures with ``counts`` atoms each, at rest."""
        n_new = len(counts)
        self.v = _append_rows(self.v, int(np.sum(counts)))
        self.dt = np.concatenate([self.dt, np.full(n_new, self.dt0)])
        self.a = np.concatenate([self.a, np.full(n_new, self.astart)])
        self.n_downhill = _append_rows(self.n_downhill, n_new)
        self.started = _append_rows(self.started, n_new)

    def keep(self, keep: np.ndarray, seg: Segments) -> None:
        """Drop the structures where ``keep`` is False (``seg``: the layout before dropping)."""
        self.v = self.v[seg.rows(keep)]
        self.dt, self.a = self.dt[keep], self.a[keep]
        self.n_downhill, self.started = self.n_downhill[keep], self.started[keep]

    def step(self, positions: np.ndarray, forces: np.ndarray, seg: Segments) -> np.ndarray:
        """Update velocities and time steps, then return the next (N, 3) displacement."""
        del positions  # FIRE needs only forces and its own velocities
        power = seg.dot(forces, self.v)
        downhill = self.started & (power > 0.0)
        uphill = self.started & ~downhill
        # Downhill: turn the velocity towards the force, keeping its length.
        f_norm = np.sqrt(seg.dot(forces, forces))
        v_norm = np.sqrt(seg.dot(self.v, self.v))
        mix = np.where(downhill, self.a, 0.0)
        ratio = np.divide(v_norm, f_norm, out=np.zeros_like(v_norm), where=f_norm > 0.0)
        self.v = seg.expand(1.0 - mix) * self.v + seg.expand(mix * ratio) * forces
        grow = downhill & (self.n_downhill > self.nmin)
        self.dt = np.where(grow, np.minimum(self.dt * self.finc, self.dtmax), self.dt)
        self.a = np.where(grow, self.a * self.fa, self.a)
        self.n_downhill = np.where(downhill, self.n_downhill + 1, self.n_downhill)
        # Uphill: stop, cut the time step and restart the mixing.
        self.v = np.where(seg.rows(uphill)[:, None], 0.0, self.v)
        self.a = np.where(uphill, self.astart, self.a)
        self.dt = np.where(uphill, self.dt * self.fdec, self.dt)
        self.n_downhill = np.where(uphill, 0, self.n_downhill)

        self.v = self.v + seg.expand(self.dt) * forces
        dr = seg.expand(self.dt) * self.v
        length = np.sqrt(seg.dot(dr, dr))
        scale = np.where(length > self.maxstep, self.maxstep / np.maximum(length, 1e-300), 1.0)
        self.started = np.ones(len(seg), dtype=bool)
        return dr * seg.expand(scale)


#: Optimiser names accepted by :func:`make_relax_optimizer`.
OPTIMIZERS: tuple[str, ...] = ("lbfgs", "fire")


def make_relax_optimizer(name: str, **kwargs: float) -> BatchedLBFGS | BatchedFIRE:
    """A fresh batched relaxation optimiser by name (``"lbfgs"`` or ``"fire"``, any case).

    ``kwargs`` go to the optimiser's constructor (e.g. ``maxstep=0.1``). (Not to be confused
    with ``eqv2.train.optim.make_optimizer``, which builds the torch optimiser for training.)
    """
    key = name.lower() if isinstance(name, str) else name
    if key == "lbfgs":
        return BatchedLBFGS(**kwargs)
    if key == "fire":
        return BatchedFIRE(**kwargs)
    raise ValueError(f"optimizer={name!r}: unknown; choose one of {', '.join(OPTIMIZERS)}.")


#: Deprecated former name of :func:`make_relax_optimizer` (removed in eqv2 0.2.0).
make_optimizer = deprecated_alias(make_relax_optimizer, "eqv2.simulate.relax.make_optimizer")
