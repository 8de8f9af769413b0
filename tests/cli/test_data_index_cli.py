"""``eqv2 data index``: builds the index beside the data once, reuses it, rebuilds on demand."""

from __future__ import annotations

import numpy as np
from ase.build import bulk, molecule
from ase.io import write

from eqv2.cli.main import main
from eqv2.data import from_atoms
from tests.data.oc20_writer import oc20_fields, pickle_record, write_oc20_lmdb


def test_index_is_built_reused_and_rebuilt(tmp_path, capsys):
    frames = [molecule("H2O"), bulk("Cu", cubic=True), molecule("CH4")]
    xyz = tmp_path / "train.extxyz"
    write(xyz, frames)
    shards = tmp_path / "shards"
    shards.mkdir()
    records = [pickle_record(oc20_fields(from_atoms(a, index=k)), 2) for k, a in enumerate(frames)]
    write_oc20_lmdb(shards / "a.lmdb", records[:2])
    write_oc20_lmdb(shards / "b.lmdb", records[2:])
    assert main(["data", "index", str(xyz), str(shards)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{xyz}: 3 structures, 12 atoms; index {xyz}.eqv2-index.npz")
    assert out[1].startswith(f"{shards}: 3 structures, 12 atoms; index {shards}/eqv2-index.npz")
    files = [tmp_path / "train.extxyz.eqv2-index.npz", shards / "eqv2-index.npz"]
    stamps = [f.stat().st_ino for f in files]  # written atomically: a new file each time
    with np.load(files[0]) as index:
        assert "natoms" in index.files  # atoms per structure, in input order (3, 4, 5)
    assert main(["data", "index", str(xyz), str(shards)]) == 0  # current: reused as it is
    assert [f.stat().st_ino for f in files] == stamps
    assert main(["data", "index", "--rebuild", str(xyz), str(shards)]) == 0
    assert all(f.stat().st_ino != s for f, s in zip(files, stamps, strict=True))


def test_missing_path_is_named(tmp_path, capsys):
    assert main(["data", "index", str(tmp_path / "nope.extxyz")]) == 2
    assert "nope.extxyz" in capsys.readouterr().err
