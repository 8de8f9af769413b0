"""The OC20 adsorbate list shipped with eqv2, and the binding atoms of an adsorbate.

An adsorbate is an ``ase.Atoms`` in the gas phase whose ``info`` holds ``smiles`` (OC20 notation,
``*`` marks the binding site) and ``binding_indices`` (the atoms that bind to the surface).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read as ase_read

__all__ = ["DEFAULT_ADSORBATE_FILE", "binding_indices", "load_adsorbates", "select_adsorbate"]

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


def select_adsorbate(images: Sequence[Atoms], key: int | str, source: str | Path) -> Atoms:
    """The entry of an adsorbate list given by its OC20 index or its SMILES (e.g. ``"*OH"``).

    Args:
        images: the list, as :func:`load_adsorbates` returns it.
        key: an index into ``images`` or an entry's ``info["smiles"]``.
        source: where the list came from, for messages.

    Returns:
        The entry itself (not a copy).

    Raises:
        ValueError: an index out of range or an unknown SMILES (the message starts with
            ``"adsorbate index ..."`` or ``"unknown adsorbate ..."`` and lists known names).
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= int(key) < len(images):
            raise ValueError(
                f"adsorbate index {key} out of range: {source} has {len(images)} entries "
                f"(0..{len(images) - 1})"
            )
        return images[int(key)]
    by_smiles = {str(a.info["smiles"]): a for a in images}
    if isinstance(key, str) and key in by_smiles:
        return by_smiles[key]
    examples = ", ".join(list(by_smiles)[:8])
    raise ValueError(
        f"unknown adsorbate {key!r}: not an OC20 adsorbate SMILES; known names include "
        f"{examples}, ... ({len(by_smiles)} in {source})"
    )
