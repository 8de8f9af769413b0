"""The data eqv2 ships inside its package (no path outside the installed package)."""

from __future__ import annotations

import hashlib
import re
from fnmatch import fnmatch
from pathlib import Path

import pytest

import eqv2.adsorption
from eqv2.adsorption import DEFAULT_ADSORBATE_FILE, binding_indices, load_adsorbates

REPO = Path(__file__).resolve().parents[2]


def test_adsorbate_list_lives_inside_the_package():
    package_dir = Path(eqv2.adsorption.__file__).resolve().parent
    assert DEFAULT_ADSORBATE_FILE.is_relative_to(package_dir)
    assert DEFAULT_ADSORBATE_FILE.is_file()


def test_adsorbate_list_is_declared_as_package_data():
    """A wheel built from pyproject.toml carries the file (setuptools package-data globs)."""
    text = (REPO / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    globs = re.findall(r'"([^"]+)"', section.split('"eqv2.adsorption" =', 1)[1].splitlines()[0])
    relative = DEFAULT_ADSORBATE_FILE.relative_to(Path(eqv2.adsorption.__file__).resolve().parent)
    assert any(fnmatch(str(relative), g) for g in globs)


def test_adsorbate_list_is_the_oc20_list():
    digest = hashlib.md5(DEFAULT_ADSORBATE_FILE.read_bytes()).hexdigest()
    assert digest == "bb4da60a3c4839873a9cf4fe49a5f391"  # SOURCE.md of the OC20 adsorbate list
    adsorbates = load_adsorbates()
    assert len(adsorbates) == 86
    assert [a.info["oc20_adsorbate_index"] for a in adsorbates] == list(range(86))


def test_binding_indices_reads_every_stored_form():
    from ase import Atoms

    atoms = Atoms("COH", positions=[[0, 0, 0], [1.2, 0, 0], [2.0, 0.5, 0]])
    for stored, expected in (
        (1, [1]),
        ("0 2", [0, 2]),
        ("[0 2]", [0, 2]),
        ("[0, 2]", [0, 2]),
        ([2, 0], [2, 0]),
    ):
        atoms.info["binding_indices"] = stored
        assert binding_indices(atoms).tolist() == expected
    del atoms.info["binding_indices"]
    assert binding_indices(atoms).tolist() == [0]


def test_select_adsorbate_by_index_and_smiles():
    from eqv2.adsorption import select_adsorbate

    images = load_adsorbates()
    assert select_adsorbate(images, 2, "list") is images[2]
    assert select_adsorbate(images, "*OH", "list").info["smiles"] == "*OH"
    for bad, message in (
        (len(images), rf"adsorbate index {len(images)} out of range: list has {len(images)}"),
        (-1, "adsorbate index -1 out of range"),
        ("*XYZ", r"unknown adsorbate '\*XYZ'.*\*OH.*in list"),
        (True, "unknown adsorbate True"),
    ):
        with pytest.raises(ValueError, match=message):
            select_adsorbate(images, bad, "list")
