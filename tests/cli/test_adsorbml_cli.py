"""``eqv2 adsorbml`` end to end (tiny model, EMT reference) and its bad-input errors."""

from __future__ import annotations

import json

import pytest
from ase import Atoms
from ase.io import read, write

from eqv2.cli import main
from eqv2.model.loading import save_model
from tests.simulate.adsorbml.conftest import tagged_slab
from tests.simulate.relax.tiny_relax import (  # noqa: F401 (one_thread: an autouse fixture)
    make_potential,
    one_thread,
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("adsorbml")
    checkpoint = save_model(make_potential(), root / "tiny.pt")
    write(root / "slab.extxyz", tagged_slab())
    write(root / "o.xyz", Atoms("O"))
    return root, checkpoint


def _args(root, checkpoint, out, *extra):
    return ["adsorbml", str(checkpoint), "--slab", str(root / "slab.extxyz"),
            "--adsorbate", str(root / "o.xyz"), "--placements", "2", "--top-k", "2",
            "--steps", "3", "--reference-steps", "10", "--out", str(out), *extra]  # fmt: skip


def test_cli_writes_structures_and_report(inputs, tmp_path, capsys):
    root, checkpoint = inputs
    out = tmp_path / "run"
    assert main(_args(root, checkpoint, out)) == 0
    printed = capsys.readouterr().out
    assert "ML+SP" in printed and "reference minimum" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ml_relaxed.extxyz", "placements.extxyz", "reference_relaxed.extxyz",
                     "report.json"]  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["n_placements"] == 2 and len(report["strategies"]["ml+sp"]) == 2
    assert report["baseline"]["source"] == "reference relaxations"
    relaxed = read(out / "ml_relaxed.extxyz", ":")
    assert len(relaxed) == 2 and (relaxed[0].get_tags()[-1] == 2)
    assert "ml_energy" in relaxed[0].info and relaxed[0].get_potential_energy() is not None


def test_cli_with_known_reference_energy(inputs, tmp_path, capsys):
    root, checkpoint = inputs
    out = tmp_path / "given"
    args = _args(root, checkpoint, out, "--reference-energy", "-1.0", "--reference-calls", "50")
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["baseline"] == {"energy": -1.0, "calls": 50, "source": "given",
                                  "placement_id": None, "n_valid": 0}  # fmt: skip
    assert report["strategies"]["ml+sp"][0]["speedup"] == 50.0
    assert not (out / "reference_relaxed.extxyz").exists()


def test_cli_bad_inputs_fail_clearly(inputs, tmp_path, capsys):
    root, checkpoint = inputs
    untagged = tagged_slab()
    untagged.set_tags(0)
    write(tmp_path / "untagged.extxyz", untagged)
    args = _args(root, checkpoint, tmp_path / "x")
    args[args.index("--slab") + 1] = str(tmp_path / "untagged.extxyz")
    assert main(args) == 2
    assert "no tag-1 (surface) atoms" in capsys.readouterr().err

    args = _args(root, checkpoint, tmp_path / "y")
    args[args.index("--adsorbate") + 1] = "*XYZ"
    assert main(args) == 2
    assert "unknown adsorbate '*XYZ'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow  # two processes that import torch and eqv2
def test_torchrun_splits_the_relaxations_and_writes_what_one_process_writes(inputs, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import eqv2

    root, checkpoint = inputs
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ("--placements", "3", "--chunk-size", "1")
    assert main(_args(root, checkpoint, one, *extra)) == 0
    src = str(Path(eqv2.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "eqv2", *_args(root, checkpoint, two, *extra)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 1  # process 0 alone writes and prints
    # the same numbers, up to the last bits of EMT's sums (numpy's summation order follows an
    # array's memory layout, which a pickled copy from another process need not share)
    for name in ("placements.extxyz", "ml_relaxed.extxyz", "reference_relaxed.extxyz"):
        a, b = (read(d / name, ":") for d in (one, two))
        assert [x.positions.tolist() for x in a] == [x.positions.tolist() for x in b], name
        assert _rounded([x.info for x in a]) == _rounded([x.info for x in b]), name
    reports = [json.loads((d / "report.json").read_text()) for d in (one, two)]
    for r in reports:
        r.pop("timings_s")
    assert _rounded(reports[0]) == _rounded(reports[1])


def _rounded(value):
    """``value`` with every float rounded to 12 significant digits (nested dicts/lists)."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars in Atoms.info
        value = value.tolist()
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value
