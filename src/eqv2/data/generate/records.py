"""What the generator returns: systems with their labelled frames, and the dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from eqv2.data.generate.config import GeneratorConfig
from eqv2.data.generate.splits import split_ids_of

__all__ = ["GeneratedDataset", "GeneratedSystem", "copy_frame", "labelled_frame"]


@dataclass
class GeneratedSystem:
    """One initial system, its relaxation and its rattled frames.

    ``frames`` holds the relaxation frames (``kind="relax"``, frame 0 is the initial structure)
    followed by the rattled ones (``kind="rattle"``). Each frame has a
    :class:`~ase.calculators.singlepoint.SinglePointCalculator` with the EMT ``energy`` and the
    raw ``forces`` on all atoms (fixed ones included; use ``apply_constraint=False`` to read them).
    """

    system_id: int
    facet: str
    bulk: str
    adsorbate: str
    adsorbate_smiles: str
    site: str
    frames: list[Atoms]
    n_relax_frames: int
    converged: bool

    @property
    def relax_frames(self) -> list[Atoms]:
        """The relaxation trajectory, initial structure first."""
        return self.frames[: self.n_relax_frames]

    @property
    def energy_relaxed(self) -> float:
        """EMT energy of the last relaxation frame (eV)."""
        return float(self.frames[self.n_relax_frames - 1].get_potential_energy())

    @property
    def initial(self) -> Atoms:
        """The initial structure with ``info["energy_relaxed"]`` and ``arrays["pos_relaxed"]``."""
        atoms = copy_frame(self.frames[0])
        atoms.info["kind"] = "initial"
        atoms.info["energy_relaxed"] = self.energy_relaxed
        atoms.info["relax_converged"] = self.converged
        atoms.new_array("pos_relaxed", self.relaxed.positions.copy())
        return atoms

    @property
    def relaxed(self) -> Atoms:
        """The last relaxation frame (``info["kind"] = "relaxed"``)."""
        atoms = copy_frame(self.frames[self.n_relax_frames - 1])
        atoms.info["kind"] = "relaxed"
        atoms.info["energy_relaxed"] = self.energy_relaxed
        atoms.info["relax_converged"] = self.converged
        return atoms


@dataclass
class GeneratedDataset:
    """The generator's output: systems (with their frames) and the parameters that made them."""

    seed: int
    config: GeneratorConfig
    systems: list[GeneratedSystem] = field(default_factory=list)

    @property
    def s2ef_frames(self) -> list[Atoms]:
        """All frames (relaxation and rattled) of all systems, in system order."""
        return [frame for system in self.systems for frame in system.frames]

    @property
    def is2re(self) -> list[tuple[Atoms, Atoms]]:
        """``(initial, relaxed)`` per system; ``initial.info["energy_relaxed"]`` is the target."""
        return [(system.initial, system.relaxed) for system in self.systems]

    @property
    def is2rs(self) -> list[tuple[Atoms, Atoms]]:
        """``(initial, relaxed)`` per system; the relaxed positions are the target."""
        return self.is2re

    def split_ids(self, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, list[int]]:
        """Assign whole systems to train/val/test (so test systems are unseen), from the seed.

        Each split with a positive fraction gets at least one system; its size is otherwise
        ``round(fraction * n_systems)``, train taking the rest.
        """
        return split_ids_of([s.system_id for s in self.systems], self.seed, fractions)

    def frames_of(self, system_ids: Sequence[int]) -> list[Atoms]:
        """S2EF frames of the given systems, in the order given."""
        by_id = {s.system_id: s for s in self.systems}
        return [frame for i in system_ids for frame in by_id[i].frames]


def labelled_frame(atoms: Atoms, energy: float, forces: np.ndarray, info: dict[str, Any]) -> Atoms:
    """A labelled snapshot: a copy with a SinglePointCalculator and the given ``info``."""
    frame = atoms.copy()
    frame.info = dict(info)
    frame.calc = SinglePointCalculator(frame, energy=float(energy), forces=np.array(forces))
    return frame


def copy_frame(frame: Atoms) -> Atoms:
    """A copy of a labelled frame with its own calculator holding the same energy and forces."""
    out = frame.copy()
    results = frame.calc.results
    out.calc = SinglePointCalculator(
        out, energy=float(results["energy"]), forces=np.array(results["forces"])
    )
    return out
