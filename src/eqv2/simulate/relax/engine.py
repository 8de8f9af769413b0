"""Relax many structures together: one batched model call per optimiser step.

Structures wait in input order and enter the running batch while it stays under an atom (and
optionally edge) budget; each step builds one graph for the whole batch, runs the model once,
and advances every structure with its own optimiser state. A structure leaves as soon as it
converges, reaches the step limit or fails, and waiting ones take its place (in-flight batching).
A failure (unknown element, no free atoms, non-finite model output, a graph that cannot be
built) stops only that structure, with a message saying which one, what and how to fix it.

The loop lives in :mod:`eqv2.simulate.relax.batching`, a structure's admission checks in
:mod:`~eqv2.simulate.relax.running`, its outcome in :mod:`~eqv2.simulate.relax.results`.

With ``cell=CellFilter(...)`` the cells relax too: each structure's optimiser rows are its
atoms plus three cell rows (:mod:`eqv2.simulate.relax.cell`), and the model is asked for the
stress as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from eqv2.model.potential import Potential
from eqv2.simulate.relax.batching import BatchRelaxer
from eqv2.simulate.relax.cell import CellFilter
from eqv2.simulate.relax.optimizers import make_relax_optimizer
from eqv2.simulate.relax.progress import Progress
from eqv2.simulate.relax.results import RelaxResult

# RelaxResult and CellFilter are re-exported: they were importable from here before the split.
__all__ = ["DEFAULT_MAX_ATOMS", "CellFilter", "RelaxResult", "relax_structures"]

#: Default atom budget of the running batch: a few OC20-sized structures on a CPU. Raise it on
#: a GPU (memory grows about linearly with atoms and edges).
DEFAULT_MAX_ATOMS = 1024


def _check_arguments(fmax: float, steps: int, max_atoms: int | None, max_edges: int | None) -> None:
    if not fmax > 0:
        raise ValueError(f"fmax={fmax} eV/Å: must be positive (OC20 uses 0.05).")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps={steps!r}: must be an integer >= 0 (OC20 uses 300).")
    for name, value in (("max_atoms", max_atoms), ("max_edges", max_edges)):
        if value is not None and value < 1:
            raise ValueError(f"{name}={value}: must be at least 1, or None for no limit.")


def relax_structures(
    potential: Potential,
    structures: Sequence[Atoms],
    *,
    optimizer: str = "lbfgs",
    fmax: float = 0.05,
    steps: int = 300,
    max_atoms: int | None = DEFAULT_MAX_ATOMS,
    max_edges: int | None = None,
    fix_tags: Sequence[int] = (),
    keep_trajectory: bool = False,
    trajectory_dir: str | Path | None = None,
    progress: bool = False,
    optimizer_options: dict[str, float] | None = None,
    cell: CellFilter | bool | None = None,
) -> list[RelaxResult]:
    """Relax structures with ``potential``, many at once, one batched model call per step.

    Each structure has its own optimiser state and stops when the largest force on its free
    atoms is at most ``fmax`` or after ``steps`` optimiser steps (as ASE's ``run(fmax, steps)``:
    at most ``steps + 1`` evaluations). Atoms fixed by ``FixAtoms`` or whose tag is in
    ``fix_tags`` never move. Structures enter the running batch in input order while its atoms
    (and edges) stay within the budgets; a structure larger than the budget runs alone.

    Args:
        potential: the model (its device and dtype are used as they are).
        structures: the input structures (not modified; a single ``Atoms`` is taken as a list).
        optimizer: ``"lbfgs"`` (ASE's LBFGS with the OC20 settings: max step 0.04 Å, memory 50,
            damping 1, initial curvature 70 eV/Å²) or ``"fire"`` (ASE's FIRE defaults).
        fmax: convergence threshold on the largest free-atom force (eV/Å).
        steps: largest number of optimiser steps per structure.
        max_atoms: atom budget of the running batch (None: no limit).
        max_edges: edge budget of the running batch (None: no limit); checked on admission with
            each structure's latest edge count.
        fix_tags: tags whose atoms are fixed, e.g. ``(0,)`` for OC20 subsurface atoms.
        keep_trajectory: return every evaluated frame in ``RelaxResult.trajectory``.
        trajectory_dir: if given, write each structure's frames to
            ``trajectory_dir/relax_<index>.extxyz`` (atomically, when it finishes).
        progress: print progress lines to stderr.
        optimizer_options: overrides of the optimiser's parameters (e.g. ``{"maxstep": 0.1}``).
        cell: relax the cells too, with the degrees of freedom of ASE's ``FrechetCellFilter``
            (``True`` for :class:`CellFilter`'s defaults: every strain component, no pressure).
            The model must give a stress (``Potential.compute(graph, stress=True)``). A
            structure then converges when ``fmax`` also bounds the cell's generalised forces
            (at the start, ``V |σ + p I| / n`` per row). Structures need periodic cells (or
            open axes masked out).

    Returns:
        One :class:`RelaxResult` per input structure, in input order. Failed structures have
        ``error`` set and keep their last positions; the others are unaffected.

    Raises:
        ValueError: an argument is out of range or ``optimizer`` is unknown.
    """
    _check_arguments(fmax, steps, max_atoms, max_edges)
    if cell is True:
        cell = CellFilter()
    elif cell is False:
        cell = None
    elif cell is not None and not isinstance(cell, CellFilter):
        raise ValueError(
            f"cell={cell!r}: give a CellFilter (e.g. CellFilter(pressure=0.01)), True for its "
            "defaults, or None to keep the cells fixed."
        )
    items = [structures] if isinstance(structures, Atoms) else list(structures)
    relaxer = BatchRelaxer(
        potential,
        items,
        make_relax_optimizer(optimizer, **(optimizer_options or {})),
        fmax=fmax,
        steps=steps,
        max_atoms=max_atoms,
        max_edges=max_edges,
        fix_tags=tuple(int(t) for t in fix_tags),
        keep_trajectory=keep_trajectory,
        trajectory_dir=trajectory_dir,
        progress=Progress(len(items)) if progress else None,
        cell=cell,
    )
    was_training = potential.training
    potential.eval()
    try:
        return relaxer.run()
    finally:
        potential.train(was_training)
