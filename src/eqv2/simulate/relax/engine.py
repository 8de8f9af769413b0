"""Relax many structures together: one batched model call per optimiser step.

Structures wait in input order and enter the running batch while it stays under an atom (and
optionally edge) budget; each step builds one graph for the whole batch, runs the model once,
and advances every structure with its own optimiser state. A structure leaves as soon as it
converges, reaches the step limit or fails, and waiting ones take its place (in-flight batching).
A failure (unknown element, no free atoms, non-finite model output, a graph that cannot be
built) stops only that structure, with a message saying which one, what and how to fix it.

With ``cell=CellFilter(...)`` the cells relax too: each structure's optimiser rows are its
atoms plus three cell rows (:mod:`eqv2.simulate.relax.cell`), and the model is asked for the
stress as well.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from eqv2.graph import fixed_mask, structure_label
from eqv2.model.potential import Potential
from eqv2.simulate.relax.cell import CELL_ROWS, CellFilter, CellLayout
from eqv2.simulate.relax.optimizers import BatchedOptimizer, make_optimizer
from eqv2.simulate.relax.segments import Segments
from eqv2.simulate.relax.trajectory import trajectory_path, write_trajectory

__all__ = ["DEFAULT_MAX_ATOMS", "CellFilter", "RelaxResult", "relax_structures"]

#: Default atom budget of the running batch: a few OC20-sized structures on a CPU. Raise it on
#: a GPU (memory grows about linearly with atoms and edges).
DEFAULT_MAX_ATOMS = 1024


@dataclass
class RelaxResult:
    """The outcome of relaxing one structure.

    Attributes:
        index: position in the input list.
        atoms: the final structure (a copy of the input with the final positions, and cell in a
            cell relaxation): its ``info`` kept plus ``converged`` and ``relax_steps`` (and
            ``relax_error`` on failure); a ``SinglePointCalculator`` with the final energy and
            raw forces (and stress in a cell relaxation) unless it failed.
        energy: final energy in eV (None when the structure was stopped by an error).
        forces: (N, 3) raw model forces in eV/Å at the final positions, fixed atoms included
            (None on error).
        converged: whether the largest force on a free atom (and, in a cell relaxation, the
            largest generalised force on the cell) is at most ``fmax``.
        steps: optimiser steps taken.
        error: why the structure was stopped, or None.
        trajectory: every evaluated frame (with energy and forces), first to last, when asked.
        stress: (3, 3) stress in eV/Å³ (ASE's sign: positive under tension) at the final
            structure of a cell relaxation; None otherwise.
    """

    index: int
    atoms: Atoms
    energy: float | None
    forces: np.ndarray | None
    converged: bool
    steps: int
    error: str | None = None
    trajectory: list[Atoms] | None = None
    stress: np.ndarray | None = None


@dataclass
class _Running:
    """A structure in the running batch."""

    index: int
    atoms: Atoms  # working copy; its positions (and cell) are the current ones
    free: np.ndarray  # (n,) atoms the optimiser may move
    edges: int  # edge count of its latest graph (for the edge budget)
    steps: int = 0
    frames: list[Atoms] | None = None
    orig_cell: np.ndarray | None = None  # (3, 3) cell at the start (cell relaxation only)


class _StructureError(ValueError):
    """A problem that stops one structure (the message is user-facing)."""


def _rephrase(exc: Exception, index: int, atoms: Atoms) -> str:
    """A graph/validation message with the formula added to its ``Structure i`` prefix."""
    message = str(exc)
    prefix = structure_label(index, atoms)
    if message.startswith(prefix + " "):
        message = message[len(prefix) + 1 :]
    return f"{structure_label(index, atoms, formula=True)} {message}"


def _free_atoms(index: int, atoms: Atoms, fix_tags: Sequence[int], cell_moves: bool) -> np.ndarray:
    """(n,) mask of atoms the optimiser moves: not FixAtoms-fixed, tag not in ``fix_tags``.

    ``cell_moves``: the cell relaxes, so a structure with every atom fixed still has work.
    """
    other = [type(c).__name__ for c in atoms.constraints if not isinstance(c, FixAtoms)]
    if other:
        raise _StructureError(
            f"{structure_label(index, atoms, formula=True)} has constraint(s) "
            f"{', '.join(sorted(set(other)))}, which "
            "the batched relaxation does not support (only FixAtoms and fix_tags). Remove them, "
            "or relax this structure with an ASE optimiser and eqv2.EqV2Calculator."
        )
    free = ~fixed_mask(atoms, fix_tags)
    if not free.any() and not cell_moves:
        raise _StructureError(
            f"{structure_label(index, atoms, formula=True)} has no free atoms: all {len(atoms)} "
            "are fixed by FixAtoms "
            f"or by fix_tags={tuple(fix_tags)}. Nothing can move; free some atoms or evaluate it "
            "with Potential.predict instead."
        )
    return free


def _prepare(
    potential: Potential,
    index: int,
    atoms: object,
    fix_tags: Sequence[int],
    keep_frames: bool,
    cell: CellFilter | None,
) -> _Running:
    """Check a waiting structure and make its running state (raises ``_StructureError``)."""
    if not isinstance(atoms, Atoms):
        raise _StructureError(
            f"Structure {index} is a {type(atoms).__name__}, not an ase.Atoms. Read structures "
            "with ase.io.read(path, ':') or build them with ase.Atoms(...)."
        )
    work = atoms.copy()
    work.calc = None
    free = _free_atoms(index, work, fix_tags, cell is not None and bool(cell.mask3x3.any()))
    try:  # validates elements, cell and contacts; the edge count serves the edge budget
        edges = int(potential.build_graph([work], index_offset=index)["edge_index"].shape[1])
        if cell is not None:
            cell.check(index, work)
    except ValueError as exc:
        raise _StructureError(_rephrase(exc, index, work)) from exc
    orig_cell = work.cell.array.copy() if cell is not None else None
    return _Running(
        index, work, free, edges, frames=[] if keep_frames else None, orig_cell=orig_cell
    )


def _fits(
    candidate: _Running, running: list[_Running], max_atoms: int | None, max_edges: int | None
) -> bool:
    """Whether ``candidate`` may join; an empty batch takes anything (no deadlock)."""
    if not running:
        return True
    atoms = sum(len(r.atoms) for r in running) + len(candidate.atoms)
    edges = sum(r.edges for r in running) + candidate.edges
    return (max_atoms is None or atoms <= max_atoms) and (max_edges is None or edges <= max_edges)


def _build_graph(
    potential: Potential, running: list[_Running]
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
            failed[k] = f"{_rephrase(exc, r.index, r.atoms)} (at relaxation step {r.steps})"
    rest = [r.atoms for k, r in enumerate(running) if k not in failed]
    return (potential.build_graph(rest) if rest else None), failed


def _nonfinite_message(
    r: _Running, energy: float, forces: np.ndarray, stress: np.ndarray | None
) -> str | None:
    bad_atoms = np.flatnonzero(~np.isfinite(forces).all(axis=1))
    bad_stress = stress is not None and not np.isfinite(stress).all()
    if np.isfinite(energy) and len(bad_atoms) == 0 and not bad_stress:
        return None
    what = [] if np.isfinite(energy) else [f"energy {energy}"]
    if len(bad_atoms):
        what.append(f"non-finite forces on {len(bad_atoms)} atom(s) (first: atom {bad_atoms[0]})")
    if bad_stress:
        what.append("a non-finite stress")
    return (
        f"{structure_label(r.index, r.atoms, formula=True)}: the model returned "
        f"{' and '.join(what)} at relaxation step "
        f"{r.steps}. The structure may be far outside the training data (check its geometry "
        "and elements) or the model is broken (check it with Potential.predict)."
    )


def _calculator(
    atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None
) -> SinglePointCalculator:
    """Final values for ``atoms``; the stress in ASE's Voigt order (xx yy zz yz xz xy)."""
    results: dict = {"energy": energy, "forces": forces.copy()}
    if stress is not None:
        results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return SinglePointCalculator(atoms, **results)


def _frame(atoms: Atoms, energy: float, forces: np.ndarray, stress: np.ndarray | None) -> Atoms:
    frame = atoms.copy()
    frame.calc = _calculator(frame, energy, forces, stress)
    return frame


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
            The model must give a stress (``Potential.evaluate(graph, stress=True)``). A
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
    relaxer = _BatchRelaxer(
        potential,
        items,
        make_optimizer(optimizer, **(optimizer_options or {})),
        fmax=fmax,
        steps=steps,
        max_atoms=max_atoms,
        max_edges=max_edges,
        fix_tags=tuple(int(t) for t in fix_tags),
        keep_trajectory=keep_trajectory,
        trajectory_dir=trajectory_dir,
        progress=_Progress(len(items)) if progress else None,
        cell=cell,
    )
    was_training = potential.training
    potential.eval()
    try:
        return relaxer.run()
    finally:
        potential.train(was_training)


class _BatchRelaxer:
    """The in-flight batching loop of :func:`relax_structures` (one instance per call)."""

    def __init__(
        self,
        potential: Potential,
        items: list,
        opt: BatchedOptimizer,
        *,
        fmax: float,
        steps: int,
        max_atoms: int | None,
        max_edges: int | None,
        fix_tags: tuple[int, ...],
        keep_trajectory: bool,
        trajectory_dir: str | Path | None,
        progress: _Progress | None,
        cell: CellFilter | None,
    ) -> None:
        self.potential, self.items, self.opt, self.cell = potential, items, opt, cell
        self.fmax, self.steps = fmax, steps
        self.max_atoms, self.max_edges, self.fix_tags = max_atoms, max_edges, fix_tags
        self.keep_trajectory, self.trajectory_dir = keep_trajectory, trajectory_dir
        self.progress = progress
        self.results: list[RelaxResult | None] = [None] * len(items)
        self.waiting = deque(range(len(items)))
        self.prepared: dict[int, _Running] = {}  # checked, waiting for room in the batch
        self.running: list[_Running] = []

    def run(self) -> list[RelaxResult]:
        while self.waiting or self.running:
            self._admit()
            if not self.running:
                continue
            graph = self._graph()
            if graph is None:
                continue
            forces, free = self._evaluate_and_retire(graph)
            if self.running:
                self._advance(forces, free)
        return self.results  # type: ignore[return-value]

    def _admit(self) -> None:
        """Move waiting structures into the batch, in input order, while the budget allows."""
        joined: list[_Running] = []
        while self.waiting:
            index = self.waiting[0]
            if index not in self.prepared:
                try:
                    self.prepared[index] = _prepare(
                        self.potential,
                        index,
                        self.items[index],
                        self.fix_tags,
                        self.keep_trajectory or self.trajectory_dir is not None,
                        self.cell,
                    )
                except _StructureError as exc:
                    self.waiting.popleft()
                    item = self.items[index]
                    blank = item.copy() if isinstance(item, Atoms) else Atoms()
                    blank.calc = None
                    self._finish(_Running(index, blank, np.zeros(0, bool), 0), error=str(exc))
                    continue
            if not _fits(
                self.prepared[index], self.running + joined, self.max_atoms, self.max_edges
            ):
                break
            self.waiting.popleft()
            joined.append(self.prepared.pop(index))
        if joined:
            self.running += joined
            self.opt.add([self._rows(r) for r in joined])

    def _drop(self, stay: np.ndarray) -> None:
        """Keep only the running structures where ``stay`` is True (optimiser state too)."""
        self.opt.keep(stay, self._segments())
        self.running = [r for r, kept in zip(self.running, stay, strict=True) if kept]

    def _rows(self, r: _Running) -> int:
        """The optimiser rows of a structure: its atoms (and three cell rows)."""
        return len(r.atoms) + (CELL_ROWS if self.cell is not None else 0)

    def _segments(self) -> Segments:
        """The optimiser's row layout of the running batch."""
        return Segments([self._rows(r) for r in self.running])

    def _atoms_segments(self) -> Segments:
        return Segments([len(r.atoms) for r in self.running])

    def _cell_arrays(self) -> tuple[CellLayout, np.ndarray, np.ndarray, np.ndarray]:
        """Layout, current cells, starting cells and cell scales (B,) of the running batch."""
        layout = CellLayout(self._atoms_segments())
        cells = np.stack([r.atoms.cell.array for r in self.running])
        orig = np.stack([r.orig_cell for r in self.running])
        factors = np.array([self.cell.factor(len(r.atoms)) for r in self.running])
        return layout, cells, orig, factors

    def _graph(self) -> dict[str, torch.Tensor] | None:
        """The batch's graph; structures whose graph cannot be built are stopped."""
        graph, broken = _build_graph(self.potential, self.running)
        if broken:
            stay = np.array([k not in broken for k in range(len(self.running))])
            for k, message in broken.items():
                self._finish(self.running[k], error=message)
            self._drop(stay)
        return graph

    def _evaluate_and_retire(self, graph: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """One model call; finished structures leave.

        Returns the optimiser's forces (zero on fixed atoms; generalised forces in a cell
        relaxation) and the mask of rows it may move, for the structures that stay.
        """
        atom_seg = self._atoms_segments()
        out = self.potential.evaluate(graph, stress=self.cell is not None)
        energies, forces, stresses = out["energy"], out["forces"], out.get("stress")
        per_structure = atom_seg.split(forces)
        # edge counts only matter for the edge budget (`_fits`)
        edge_counts = (
            np.bincount(
                graph["batch"][graph["edge_index"][1]].cpu().numpy(), minlength=len(self.running)
            )
            if self.max_edges is not None
            else None
        )
        free = np.concatenate([r.free for r in self.running])
        moving = np.where(free[:, None], forces, 0.0)
        if self.cell is None:
            seg = atom_seg
        else:
            layout, cells, orig, factors = self._cell_arrays()
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite: reported below
                moving = self.cell.forces(moving, stresses, cells, orig, factors, layout)
            seg, free = layout.rows, layout.row_mask(free)
        largest = seg.max(np.linalg.norm(moving, axis=1))
        stay = np.ones(len(self.running), dtype=bool)
        for k, r in enumerate(self.running):
            if edge_counts is not None:
                r.edges = int(edge_counts[k])
            stress = None if stresses is None else stresses[k]
            error = _nonfinite_message(r, energies[k], per_structure[k], stress)
            if r.frames is not None:
                r.frames.append(_frame(r.atoms, energies[k], per_structure[k], stress))
            converged = error is None and largest[k] <= self.fmax
            if error is not None or converged or r.steps >= self.steps:
                stay[k] = False
                self._finish(r, energies[k], per_structure[k], converged, error, stress)
        if not stay.all():
            rows = seg.rows(stay)
            moving, free = moving[rows], free[rows]
            self._drop(stay)
        return moving, free

    def _advance(self, forces: np.ndarray, free: np.ndarray) -> None:
        """One optimiser step for every running structure."""
        seg = self._segments()
        positions = np.concatenate([r.atoms.positions for r in self.running])
        if self.cell is None:
            step = self.opt.step(positions, forces, seg)
            step[~free] = 0.0  # fixed atoms never move, whatever the optimiser did
            for r, dr in zip(self.running, seg.split(step), strict=True):
                r.atoms.positions = r.atoms.positions + dr
        else:
            layout, cells, orig, factors = self._cell_arrays()
            dof = self.cell.dof(positions, cells, orig, factors, layout)
            step = self.opt.step(dof, forces, seg)
            step[~free] = 0.0  # fixed atoms keep their fractional coordinates
            positions, new_cells = self.cell.positions_and_cells(dof + step, orig, factors, layout)
            runaway = self.cell.runaway(orig, cells, new_cells)
            parts = (self.running, layout.atoms.split(positions), new_cells, runaway)
            for r, pos, c, reason in zip(*parts, strict=True):
                if reason is None:  # a runaway structure keeps its last cell and positions
                    r.atoms.set_cell(c, scale_atoms=False)
                    r.atoms.positions = pos
            self._stop_runaways(runaway)
        for r in self.running:
            r.steps += 1
        if self.progress is not None:
            self.progress.tick(self.running)

    def _stop_runaways(self, reasons: list[str | None]) -> None:
        """Stop, as failed, the structures whose cell step `CellFilter.runaway` refused."""
        if all(reason is None for reason in reasons):
            return
        for r, reason in zip(self.running, reasons, strict=True):
            if reason is not None:
                label = structure_label(r.index, r.atoms, formula=True)
                self._finish(r, error=f"{label} at relaxation step {r.steps}: {reason}")
        self._drop(np.array([reason is None for reason in reasons]))

    def _finish(
        self,
        r: _Running,
        energy: float | None = None,
        forces: np.ndarray | None = None,
        converged: bool = False,
        error: str | None = None,
        stress: np.ndarray | None = None,
    ) -> None:
        """Store the result of a structure that leaves (and write its trajectory)."""
        atoms = r.atoms
        atoms.info["converged"] = bool(converged)
        atoms.info["relax_steps"] = int(r.steps)
        failed = error is not None
        if failed:
            atoms.info["relax_error"] = error
        else:
            atoms.calc = _calculator(atoms, energy, forces, stress)
        if self.trajectory_dir is not None and r.frames is not None:
            write_trajectory(trajectory_path(self.trajectory_dir, r.index), r.frames)
        self.results[r.index] = RelaxResult(
            index=r.index,
            atoms=atoms,
            energy=None if failed else float(energy),
            forces=None if failed else forces.copy(),
            converged=bool(converged),
            steps=int(r.steps),
            error=error,
            trajectory=r.frames if self.keep_trajectory else None,
            stress=None if failed or stress is None else stress.copy(),
        )
        if self.progress is not None:
            self.progress.done(converged, error)


class _Progress:
    """Progress lines on stderr: when structures finish, at most once a second."""

    def __init__(self, total: int) -> None:
        self.total, self.finished, self.converged, self.failed = total, 0, 0, 0
        self.last = 0.0

    def done(self, converged: bool, error: str | None) -> None:
        self.finished += 1
        self.converged += int(converged)
        self.failed += int(error is not None)

    def tick(self, running: list[_Running]) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        n_atoms = sum(len(r.atoms) for r in running)
        print(
            f"relax: {self.finished}/{self.total} done ({self.converged} converged, "
            f"{self.failed} failed); {len(running)} running ({n_atoms} atoms)",
            file=sys.stderr,
            flush=True,
        )
