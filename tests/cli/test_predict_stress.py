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
    out = tmp_path / "out.extxyz"
    assert (
        main(
            [
                "predict",
                str(checkpoints_dir / "omat_stress_small.pt"),
                str(inputs),
                "-o",
                str(out),
                "--stress",
            ]
        )
        == 0
    )
    frames = read(out, ":")
    for atoms, voigt in zip(frames, exp["stress_voigt"][:2], strict=True):
        np.testing.assert_allclose(atoms.info["eqv2_stress"], voigt, atol=1e-6, rtol=0)
    plain = tmp_path / "plain.extxyz"
    assert (
        main(
            [
                "predict",
                str(checkpoints_dir / "omat_stress_small.pt"),
                str(inputs),
                "-o",
                str(plain),
            ]
        )
        == 0
    )
    assert "eqv2_stress" not in read(plain, 0).info
