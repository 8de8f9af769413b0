"""A structure in the running batch of a relaxation: its checks on admission and its state.

Internal to :mod:`eqv2.simulate.relax`: :func:`prepare` checks a waiting structure and makes its
:class:`Running` state, :func:`fits` applies the batch budgets, and :func:`build_batch_graph`
builds one graph for the batch, isolating the structures whose graph cannot be built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms

from eqv2.graph import fixed_mask, structure_label
from eqv2.model.potential import Potential
from eqv2.simulate.relax.cell import CellFilter

__all__ = [
    "Running",
    "StructureError",
    "build_batch_graph",
    "fits",
    "free_atoms",
    "prepare",
    "rephrase",
]


@dataclass
class Running:
    """A structure in the running batch."""

    index: int
    atoms: Atoms  # working copy; its positions (and cell) are the current ones
    free: np.ndarray  # (n,) atoms the optimiser may move
    edges: int  # edge count of its latest graph (for the edge budget)
    steps: int = 0
    frames: list[Atoms] | None = None
    orig_cell: np.ndarray | None = None  # (3, 3) cell at the start (cell relaxation only)


class StructureError(ValueError):
    """A problem that stops one structure (the message is user-facing)."""


def rephrase(exc: Exception, index: int, atoms: Atoms) -> str:
    """A graph/validation message with the formula added to its ``Structure i`` prefix."""
    message = str(exc)
    prefix = structure_label(index, atoms)
    if message.startswith(prefix + " "):
        message = message[len(prefix) + 1 :]
    return f"{structure_label(index, atoms, formula=True)} {message}"


def free_atoms(index: int, atoms: Atoms, fix_tags: Sequence[int], cell_moves: bool) -> np.ndarray:
    """(n,) mask of atoms the optimiser moves: not FixAtoms-fixed, tag not in ``fix_tags``.

    ``cell_moves``: the cell relaxes, so a structure with every atom fixed still has work.
    """
    other = [type(c).__name__ for c in atoms.constraints if not isinstance(c, FixAtoms)]
    if other:
        raise StructureError(
            f"{structure_label(index, atoms, formula=True)} has constraint(s) "
            f"{', '.join(sorted(set(other)))}, which "
            "the batched relaxation does not support (only FixAtoms and fix_tags). Remove them, "
            "or relax this structure with an ASE optimiser and eqv2.EqV2Calculator."
        )
    free = ~fixed_mask(atoms, fix_tags)
    if not free.any() and not cell_moves:
        raise StructureError(
            f"{structure_label(index, atoms, formula=True)} has no free atoms: all {len(atoms)} "
            "are fixed by FixAtoms "
            f"or by fix_tags={tuple(fix_tags)}. Nothing can move; free some atoms or evaluate it "
            "with Potential.predict instead."
        )
    return free


def prepare(
    potential: Potential,
    index: int,
    atoms: object,
    fix_tags: Sequence[int],
    keep_frames: bool,
    cell: CellFilter | None,
) -> Running:
    """Check a waiting structure and make its running state (raises ``StructureError``)."""
    if not isinstance(atoms, Atoms):
        raise StructureError(
            f"Structure {index} is a {type(atoms).__name__}, not an ase.Atoms. Read structures "
            "with ase.io.read(path, ':') or build them with ase.Atoms(...)."
        )
    work = atoms.copy()
    work.calc = None
    free = free_atoms(index, work, fix_tags, cell is not None and bool(cell.mask3x3.any()))
    try:  # validates elements, cell and contacts; the edge count serves the edge budget
        edges = int(potential.build_graph([work], index_offset=index)["edge_index"].shape[1])
        if cell is not None:
            cell.check(index, work)
    except ValueError as exc:
        raise StructureError(rephrase(exc, index, work)) from exc
    orig_cell = work.cell.array.copy() if cell is not None else None
    return Running(
        index, work, free, edges, frames=[] if keep_frames else None, orig_cell=orig_cell
    )


def fits(
    candidate: Running, running: list[Running], max_atoms: int | None, max_edges: int | None
) -> bool:
    """Whether ``candidate`` may join; an empty batch takes anything (no deadlock)."""
    if not running:
        return True
    atoms = sum(len(r.atoms) for r in running) + len(candidate.atoms)
    edges = sum(r.edges for r in running) + candidate.edges
    return (max_atoms is None or atoms <= max_atoms) and (max_edges is None or edges <= max_edges)


def build_batch_graph(
    potential: Potential, running: list[Running]
) -> tuple[dict[str, torch.Tensor] | None, dict[int, str]]:
    """One graph for the batch; on failure find the culprits one by one and build without them.

    Returns the graph (None if nothing is left) and ``{position in running: error message}``.
    """
    try:
        return potential.build_graph([r.atoms for r in running]), {}
    except ValueError:
        pass
    failed: dict[int, str] = {}
    for k, r in enumerate(running):
        try:
            potential.build_graph([r.atoms], index_offset=r.index)
        except ValueError as exc:
            failed[k] = f"{rephrase(exc, r.index, r.atoms)} (at relaxation step {r.steps})"
    rest = [r.atoms for k, r in enumerate(running) if k not in failed]
    return (potential.build_graph(rest) if rest else None), failed
