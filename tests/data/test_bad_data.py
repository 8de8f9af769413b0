"""Bad data gives a DataError naming the file, the record and the fix, never a raw traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import lmdb
import numpy as np
import pytest

from eqv2.cli.main import main
from eqv2.data import DataError, Structure, open_dataset, read_structures, to_atoms, write_store
from tests.data.oc20_writer import oc20_fields, pickle_record, write_oc20_lmdb
from tests.data.strategies import random_structure


def _records(k: int, n: int = 4) -> list[bytes]:
    return [pickle_record(oc20_fields(random_structure(i, n)), 2) for i in range(k)]


def _put(path: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()


def test_corrupt_oc20_record_mid_dataset_is_named_by_file_and_index(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    recs = _records(4)
    write_oc20_lmdb(shards / "a.lmdb", recs[:2])
    cut = write_oc20_lmdb(shards / "b.lmdb", [recs[2][: len(recs[2]) // 2], recs[3]])
    with pytest.warns(UserWarning, match="1 record"):
        ds = open_dataset(shards)
    assert ds.natoms.tolist() == [4, 4, 0, 4]  # indexed, so the rest stays readable
    ds[1], ds[3]
    with pytest.raises(DataError, match=rf"{cut}, structure 2 \(record key b'0'\): .*truncated"):
        ds[2]


def test_corrupt_aselmdb_row_is_named(tmp_path: Path) -> None:
    pytest.importorskip("ase_db_backends")  # to write the file the way fairchem does
    import ase.db

    path = tmp_path / "d.aselmdb"
    with ase.db.connect(str(path)) as db:
        for i in range(3):
            db.write(to_atoms(random_structure(i, 3, labels=False)))
    _put(path, b"2", b"\x78\x9c garbage")
    with pytest.warns(UserWarning, match="1 record"):
        ds = open_dataset(path)
    ds[0], ds[2]
    with pytest.raises(DataError, match=r"d\.aselmdb, structure 1 \(row id 2\): .*corrupt"):
        ds[1]


def test_corrupted_lmdb_page_gives_a_clear_error(tmp_path: Path) -> None:
    path = write_oc20_lmdb(tmp_path / "c.lmdb", _records(300, 8))
    data = bytearray(path.read_bytes())
    for page in (5, 20):  # overwrite two leaf pages' headers
        data[page * 4096 + 8 : page * 4096 + 16] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset(path)
    assert any("MDB_CORRUPTED" in str(w.message) for w in caught)
    errors = []
    for i in range(len(ds)):
        try:
            ds[i]
        except DataError as exc:
            errors.append(str(exc))
    assert errors and all("c.lmdb, structure" in e for e in errors)
    assert any("MDB_CORRUPTED" in e and "re-download or regenerate" in e for e in errors)


_WRITER = """
import lmdb, os, sys
env = lmdb.open(sys.argv[1], subdir=False, lock=False, map_size=1 << 30)
with env.begin(write=True) as txn:
    for i in range(100, 4100):
        txn.put(str(i).encode(), os.urandom(3000))
env.close()
"""


def test_lmdb_written_by_another_process_gives_a_clear_error(tmp_path: Path) -> None:
    path = write_oc20_lmdb(tmp_path / "live.lmdb", _records(3))
    ds = open_dataset(path)
    ds[0]
    subprocess.run([sys.executable, "-c", _WRITER, str(path)], check=True)  # grows past the map
    with pytest.raises(DataError, match=r"live\.lmdb, structure 0: .*another process"):
        ds[0]


def test_empty_and_truncated_extxyz(tmp_path: Path) -> None:
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    for reader in (open_dataset, read_structures):
        with pytest.raises(DataError, match=r"empty\.extxyz: file is empty"):
            reader(empty)
    import ase.io

    full = tmp_path / "full.extxyz"
    ase.io.write(full, [to_atoms(random_structure(i, 5, labels=False)) for i in range(3)])
    text = full.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.extxyz"
    cut.write_text("".join(text[:-2]))
    with pytest.raises(DataError, match=r"cut\.extxyz, structure 2: .*truncated"):
        open_dataset(cut)
    with pytest.raises(DataError, match=r"cut\.extxyz, structure 2"):
        read_structures(cut)


def test_unknown_element_is_a_clear_error_in_convert(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    import ase.io
    from ase import Atoms

    path = tmp_path / "z.traj"
    ase.io.write(path, Atoms(numbers=[119, 1], positions=[[0, 0, 0], [0, 0, 1.0]]))
    assert main(["data", "convert", str(path), "-o", str(tmp_path / "o.lmdb")]) == 2
    err = capsys.readouterr().err
    assert "z.traj, structure 0: field 'numbers' has an atom with Z=119" in err
    assert not (tmp_path / "o.lmdb").exists()


def test_bit_flipped_store_record_is_refused(tmp_path: Path) -> None:
    s = Structure(
        numbers=[29, 8], positions=[[0.0, 0.0, 0.0], [1.5, 0.3, 0.2]], energy=-1.0, info={}
    )
    path = write_store([s, s.copy()], tmp_path / "s.lmdb")
    data = bytearray(path.read_bytes())
    at = data.find(s.positions.tobytes())  # the first record's coordinates
    assert at > 0
    data[at + 8 * 3 + 6] ^= 0x08  # one bit of atom 1's x: moves it by a fraction of an Å
    path.write_bytes(bytes(data))
    ds = open_dataset(path)
    with pytest.raises(DataError, match=r"s\.lmdb, structure [01]: .*CRC-32 checksum"):
        [ds[0], ds[1]]


def test_old_store_version_asks_to_regenerate(tmp_path: Path) -> None:
    path = write_store([random_structure(0, 2)], tmp_path / "old.lmdb")
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        meta = json.loads(txn.get(b"__eqv2_metadata__"))
        meta["version"] = 1
        txn.put(b"__eqv2_metadata__", json.dumps(meta).encode())
    env.close()
    with pytest.raises(DataError, match=r"version 1 \(an older store.*regenerate the store"):
        open_dataset(path)


def test_positions_survive_the_checksum(tmp_path: Path) -> None:
    s = random_structure(3, 6)
    path = write_store([s], tmp_path / "ok.lmdb")
    assert np.array_equal(open_dataset(path)[0].positions, s.positions)
