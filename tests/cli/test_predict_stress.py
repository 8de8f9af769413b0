"""``eqv2 predict --stress`` writes the model's stress in ASE's convention."""

from __future__ import annotations

import numpy as np
from ase.io import read, write

from eqv2.cli.main import main
from tests.model.stress_cases import expected, structures


def test_predict_stress_flag_writes_voigt_stress(tmp_path, checkpoints_dir):
    exp = expected(checkpoints_dir, "omat")
    inputs = tmp_path / "in.extxyz"
    write(inputs, structures(exp)[:2], format="extxyz")

    def predict(out, *flags):
        model = str(checkpoints_dir / "omat_stress_small.pt")
        assert main(["predict", model, str(inputs), "-o", str(out), *flags]) == 0
        return read(out, ":")

    frames = predict(tmp_path / "out.extxyz", "--stress")
    for atoms, voigt in zip(frames, exp["stress_voigt"][:2], strict=True):
        np.testing.assert_allclose(atoms.info["eqv2_stress"], voigt, atol=1e-6, rtol=0)
    assert "eqv2_stress" not in predict(tmp_path / "plain.extxyz")[0].info
