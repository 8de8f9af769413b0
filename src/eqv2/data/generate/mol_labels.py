"""3D geometry (RDKit ETKDG + MMFF94) and GFN2-xTB labels (tblite) for one molecule.

Each step either succeeds or raises :class:`MoleculeFailure` with a short ``reason`` that the
generator counts: ``"embed"`` (no conformer), ``"mmff_params"`` (MMFF94 lacks parameters),
``"mmff_not_converged"``, ``"scf"`` (xTB SCF did not converge), ``"open_shell"`` (odd electron
count) or ``"bad_gap"`` (LUMO not above HOMO). A failed molecule is skipped, never labelled with
numbers from a failed calculation.

Units of the labels: energy eV (GFN2-xTB total energy, not an atomisation energy), forces eV/Å,
``homo``/``lumo``/``gap`` meV, ``mu`` Debye (|dipole|), ``dipole`` Debye (vector in the frame
of the positions). The electronic temperature is tblite's default (300 K Fermi smearing);
HOMO is orbital ``n_electrons/2 - 1`` and LUMO the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.units import Bohr, Debye, Hartree

from eqv2.data.records import Structure

__all__ = ["MoleculeFailure", "XtbSettings", "embed", "label_xtb", "molecule_record"]


class MoleculeFailure(Exception):
    """One molecule could not be built or labelled; ``reason`` says which step failed."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class XtbSettings:
    """GFN2-xTB settings: SCF iteration limit and MMFF iteration limit before it."""

    max_scf_iterations: int = 250
    mmff_iterations: int = 2000


def embed(smiles: str, seed: int, mmff_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers ``(N,)`` and MMFF94-optimised positions ``(N, 3)`` Å of one conformer.

    RDKit's ETKDGv3 with ``randomSeed=seed`` draws the conformer, so the result is a function of
    ``(smiles, seed)``.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise MoleculeFailure("embed", smiles)
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is None:
        raise MoleculeFailure("mmff_params", smiles)
    ff = AllChem.MMFFGetMoleculeForceField(mol, props)
    if ff.Minimize(maxIts=int(mmff_iterations)) != 0:
        raise MoleculeFailure("mmff_not_converged", smiles)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    return numbers, np.asarray(mol.GetConformer().GetPositions(), dtype=np.float64)


def label_xtb(numbers: np.ndarray, positions: np.ndarray, settings: XtbSettings) -> dict[str, Any]:
    """GFN2-xTB single point: ``energy``, ``forces`` and the electronic targets (see module)."""
    from tblite.exceptions import TBLiteRuntimeError
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", numbers, positions / Bohr)
    calc.set("verbosity", 0)
    calc.set("max-iter", int(settings.max_scf_iterations))
    try:
        res = calc.singlepoint()
    except TBLiteRuntimeError as exc:
        raise MoleculeFailure("scf", str(exc)) from None
    occupations = np.asarray(res.get("orbital-occupations"))
    n_el = int(round(float(occupations.sum())))
    if n_el % 2:
        raise MoleculeFailure("open_shell", f"{n_el} electrons")
    eps = np.asarray(res.get("orbital-energies")) * Hartree * 1000.0  # meV
    homo, lumo = float(eps[n_el // 2 - 1]), float(eps[n_el // 2])
    if not lumo > homo:
        raise MoleculeFailure("bad_gap", f"HOMO {homo:.1f} meV, LUMO {lumo:.1f} meV")
    dipole = np.asarray(res.get("dipole")) * Bohr / Debye  # e·Bohr -> D
    return {
        "energy": float(res.get("energy")) * Hartree,
        "forces": -np.asarray(res.get("gradient")) * Hartree / Bohr,
        "homo": homo,
        "lumo": lumo,
        "gap": lumo - homo,
        "mu": float(np.linalg.norm(dipole)),
        "dipole": dipole,
    }


def molecule_record(smiles: str, mol_id: int, seed: int, settings: XtbSettings) -> Structure:
    """The labelled :class:`Structure` of one molecule (raises :class:`MoleculeFailure`)."""
    numbers, positions = embed(smiles, seed, settings.mmff_iterations)
    labels = label_xtb(numbers, positions, settings)
    return Structure(
        numbers=numbers,
        positions=positions,
        energy=labels.pop("energy"),
        forces=labels.pop("forces"),
        info={
            "mol_id": int(mol_id),
            "smiles": smiles,
            "n_heavy": int((numbers > 1).sum()),
            "conformer_seed": int(seed),
        },
        targets=labels,
    ).validate()
