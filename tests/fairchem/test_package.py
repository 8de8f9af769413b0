"""eqv2.fairchem as a package: the deprecated eqv2.model.fairchem alias, and load_model's use
of the one fairchem entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import eqv2
import eqv2.fairchem
from eqv2.model.checkpoint import CheckpointError


def test_alias_warns_once_and_re_exports_the_same_objects() -> None:
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "import eqv2.fairchem, eqv2.model\n"
        "assert 'eqv2.model.fairchem' not in sys.modules  # nothing of eqv2 needs the alias\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import eqv2.model.fairchem as old\n"
        "    import eqv2.model.fairchem\n"
        "    from eqv2.model.fairchem import read_fairchem_checkpoint\n"
        "import eqv2.fairchem as new, eqv2.model.state_dict as sd\n"
        "assert all(getattr(old, n) is getattr(new, n) for n in new.__all__)\n"
        "assert old.validate_state_dict is sd.validate_state_dict\n"
        "assert old.StateDictMismatchError is sd.StateDictMismatchError\n"
        "dep = [w for w in caught if issubclass(w.category, DeprecationWarning)]\n"
        "assert len(dep) == 1 and 'eqv2.fairchem' in str(dep[0].message), dep\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_load_model_refuses_what_is_not_a_checkpoint_naming_the_source(tmp_path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weights": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match=r"'.*weights\.pt' is not a fairchem checkpoint"):
        eqv2.load_model(path)
    # a bare state dict needs a config; the message says so and names the file
    torch.save({"sphere_embedding.weight": torch.zeros(90, 8)}, path)
    with pytest.raises(CheckpointError, match=r"weights\.pt' is a bare state dict.*config="):
        eqv2.load_model(path)
    with pytest.raises(CheckpointError, match="the checkpoint is a bare state dict"):
        eqv2.load_model({"sphere_embedding.weight": torch.zeros(90, 8)})


def test_read_names_a_loaded_dict_by_its_source() -> None:
    with pytest.raises(CheckpointError, match="'from-s3://bucket/x.pt' is not a fairchem"):
        eqv2.fairchem.read_fairchem_checkpoint({"weights": 1}, source="from-s3://bucket/x.pt")


def test_fairchem_imports_only_the_model_and_layers_below() -> None:
    """Layering (DESIGN.md §2): eqv2.fairchem sits beside eqv2.model and builds on it; it never
    imports data, train, simulate or cli."""
    from tests.test_architecture import PACKAGE, SRC, read_package

    pkg = read_package(SRC, PACKAGE)
    below = ("eqv2.fairchem", "eqv2.model", "eqv2.nn", "eqv2.so3", "eqv2.graph")
    below += ("eqv2.atomic", "eqv2.version")
    upward = {
        (module, target)
        for module, targets in pkg.edges.items()
        if module.startswith("eqv2.fairchem")
        for target in targets
        if not target.startswith(below)
    }
    assert not upward
    assert any(m.startswith("eqv2.fairchem.") for m in pkg.edges)  # the checker saw the package
