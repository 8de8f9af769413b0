"""The in-flight batching loop of a relaxation: admit, evaluate, retire, step.

Internal to :mod:`eqv2.simulate.relax` (the entry point is
:func:`~eqv2.simulate.relax.engine.relax_structures`). Each turn admits waiting structures while
the budgets allow, builds one graph for the running batch, calls the model once, lets finished
or failed structures leave, and advances the rest with the batched optimiser.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from eqv2.graph import structure_label
from eqv2.model.potential import Potential
from eqv2.simulate.relax.cell import CELL_ROWS, CellFilter, CellLayout
from eqv2.simulate.relax.optimizers import BatchedOptimizer
from eqv2.simulate.relax.progress import Progress
from eqv2.simulate.relax.results import (
    RelaxResult,
    final_calculator,
    labelled_frame,
    nonfinite_message,
)
from eqv2.simulate.relax.running import (
    Running,
    StructureError,
    build_batch_graph,
    fits,
    prepare,
)
from eqv2.simulate.relax.segments import Segments
from eqv2.simulate.relax.trajectory import trajectory_path, write_trajectory

__all__ = ["BatchRelaxer"]


class BatchRelaxer:
    """The in-flight loop of :func:`~eqv2.simulate.relax.relax_structures` (one per call)."""

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
        progress: Progress | None,
        cell: CellFilter | None,
    ) -> None:
        self.potential, self.items, self.opt, self.cell = potential, items, opt, cell
        self.fmax, self.steps = fmax, steps
        self.max_atoms, self.max_edges, self.fix_tags = max_atoms, max_edges, fix_tags
        self.keep_trajectory, self.trajectory_dir = keep_trajectory, trajectory_dir
        self.progress = progress
        self.results: list[RelaxResult | None] = [None] * len(items)
        self.waiting = deque(range(len(items)))
        self.prepared: dict[int, Running] = {}  # checked, waiting for room in the batch
        self.running: list[Running] = []

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
        joined: list[Running] = []
        while self.waiting:
            index = self.waiting[0]
            if index not in self.prepared:
                try:
                    self.prepared[index] = prepare(
                        self.potential,
                        index,
                        self.items[index],
                        self.fix_tags,
                        self.keep_trajectory or self.trajectory_dir is not None,
                        self.cell,
                    )
                except StructureError as exc:
                    self.waiting.popleft()
                    item = self.items[index]
                    blank = item.copy() if isinstance(item, Atoms) else Atoms()
                    blank.calc = None
                    self._finish(Running(index, blank, np.zeros(0, bool), 0), error=str(exc))
                    continue
            if not fits(
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

    def _rows(self, r: Running) -> int:
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
        graph, broken = build_batch_graph(self.potential, self.running)
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
        out = self.potential.compute(graph, stress=self.cell is not None)
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
            error = nonfinite_message(
                r.index, r.atoms, r.steps, energies[k], per_structure[k], stress
            )
            if r.frames is not None:
                r.frames.append(labelled_frame(r.atoms, energies[k], per_structure[k], stress))
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
        r: Running,
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
            atoms.calc = final_calculator(atoms, energy, forces, stress)
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
