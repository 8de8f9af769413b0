"""The OC20 adsorbate list shipped with eqv2, and the binding atoms of an adsorbate.

An adsorbate is an ``ase.Atoms`` in the gas phase whose ``info`` holds ``smiles`` (OC20 notation,
``*`` marks the binding site) and ``binding_indices`` (the atoms that bind to the surface).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read as ase_read

__all__ = ["DEFAULT_ADSORBATE_FILE", "binding_indices", "load_adsorbates"]

#: The 86 OC20 adsorbates, shipped inside the package (source and licence in
#: ``eqv2/adsorption/resources/README.md``).
DEFAULT_ADSORBATE_FILE: Path = (
    Path(__file__).resolve().parent / "resources" / "oc20_adsorbates.extxyz"
)


def binding_indices(atoms: Atoms) -> np.ndarray:
    """The adsorbate's binding atoms from ``info["binding_indices"]`` (default: atom 0).

    extxyz reads the field back as an int, a string (``"0 1"`` or ``"[0 1]"``) or an int array;
    all give the same indices.
    """
    raw = atoms.info.get("binding_indices", [0])
    if isinstance(raw, str):
        raw = raw.replace("[", " ").replace("]", " ").replace(",", " ").split()
    return np.atleast_1d(np.asarray(raw, dtype=int))


def load_adsorbates(path: str | Path = DEFAULT_ADSORBATE_FILE) -> list[Atoms]:
    """Read an adsorbate list (extxyz with ``smiles`` and ``binding_indices`` in ``info``).

    Raises:
        FileNotFoundError: if the file is missing, with where it was looked for.
        ValueError: an entry without ``smiles`` or ``binding_indices``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"adsorbate file not found: {path}. Expected an extxyz adsorbate list with "
            "info['smiles'] and info['binding_indices'] (eqv2 ships oc20_adsorbates.extxyz in "
            "eqv2/adsorption/resources; reinstall eqv2 if it is missing); pass another list as "
            "adsorbate_file=..."
        )
    images = ase_read(path, index=":", format="extxyz")
    for k, atoms in enumerate(images):
        for key in ("smiles", "binding_indices"):
            if key not in atoms.info:
                raise ValueError(
                    f"structure {k} of {path} has no info[{key!r}]; every adsorbate needs its "
                    "SMILES and the indices of its binding atoms"
                )
    return images
