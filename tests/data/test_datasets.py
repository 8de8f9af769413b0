"""open_dataset: random access over every format, indexes, pickling and worker processes."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from eqv2.data import (
    DataError,
    ListDataset,
    Structure,
    open_dataset,
    read_structures,
    to_atoms,
    write_store,
)
from eqv2.data.index import index_locations
from tests.data.oc20_writer import oc20_fields, pickle_record, write_oc20_lmdb
from tests.data.strategies import random_structure


def _structures(k: int = 5) -> list[Structure]:
    out = []
    for i in range(k):
        s = random_structure(i, 2 + i, decimals=6)
        s.numbers = np.clip(s.numbers, 1, 80)  # extxyz writes symbols: keep known elements
        s.stress = None
        s.info = {"name": f"s{i}"}
        out.append(s)
    return out


def _write_extxyz(path: Path, structures: list[Structure]) -> Path:
    import ase.io

    ase.io.write(path, [to_atoms(s) for s in structures], format="extxyz")
    return path


def _write_db(path: Path, structures: list[Structure]) -> Path:
    import ase.db

    with ase.db.connect(str(path)) as db:
        for s in structures:
            db.write(to_atoms(s))
    return path


def _write_shards(directory: Path, structures: list[Structure], per_shard: int = 2) -> Path:
    directory.mkdir()
    for k in range(0, len(structures), per_shard):
        recs = [pickle_record(oc20_fields(s), 2) for s in structures[k : k + per_shard]]
        write_oc20_lmdb(directory / f"data.{k // per_shard:04d}.lmdb", recs)
    return directory


def _check(ds, structures: list[Structure], atol: float = 0.0) -> None:
    assert len(ds) == len(structures)
    assert ds.natoms.dtype == np.int64
    np.testing.assert_array_equal(ds.natoms, [len(s) for s in structures])
    for i in (0, len(structures) - 1, -1, 2):
        got, want = ds[i], structures[i]
        np.testing.assert_array_equal(got.numbers, want.numbers)
        np.testing.assert_allclose(got.positions, want.positions, atol=atol, rtol=0)
        np.testing.assert_allclose(got.forces, want.forces, atol=atol * 10, rtol=1e-6)
        assert got.energy == pytest.approx(want.energy, rel=1e-6)
        if ds.format != "store":  # a store keeps the info its records were written with
            assert got.info["index"] == i % len(structures)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(structures)]


@pytest.mark.parametrize("fmt", ["extxyz", "db", "aselmdb", "oc20", "store"])
def test_every_format_reads_the_same_records(tmp_path: Path, fmt: str) -> None:
    structures = _structures()
    if fmt == "extxyz":
        path = _write_extxyz(tmp_path / "a.extxyz", structures)
    elif fmt in ("db", "aselmdb"):
        if fmt == "aselmdb":
            pytest.importorskip("ase_db_backends")
        path = _write_db(tmp_path / f"a.{fmt}", structures)
    elif fmt == "oc20":
        path = _write_shards(tmp_path / "shards", structures)
    else:
        path = write_store(structures, tmp_path / "a.lmdb")
    ds = open_dataset(path, require=("energy", "forces"))
    _check(ds, structures, atol=1e-6 if fmt == "oc20" else 1e-12)
    if fmt != "store":
        assert ds.index_path is not None and ds.index_path.is_file()
    # the same records as the list reader
    listed = read_structures(path)
    np.testing.assert_array_equal(ds[3].positions, listed[3].positions)
    ds.close()


def test_index_reused_then_rebuilt_when_the_file_changes(tmp_path: Path) -> None:
    path = _write_extxyz(tmp_path / "a.xyz", _structures(4))
    ds = open_dataset(path)
    index = ds.index_path
    assert index == index_locations(path)[0]
    stamp = index.stat().st_mtime_ns
    open_dataset(path)
    assert index.stat().st_mtime_ns == stamp  # reused, not rewritten
    more = _structures(6)
    time.sleep(0.01)
    _write_extxyz(path, more)
    ds = open_dataset(path)
    assert len(ds) == 6 and ds.index_path == index
    np.testing.assert_array_equal(ds[5].numbers, more[5].numbers)


def test_unwritable_data_location_puts_the_index_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_extxyz(tmp_path / "a.extxyz", _structures(3))
    monkeypatch.setenv("EQV2_CACHE_DIR", str(tmp_path / "cache"))
    # A directory where the index file would go makes that location unwritable (as a
    # read-only data directory does, also for root, who may write any directory).
    index_locations(path)[0].mkdir()
    ds = open_dataset(path)
    assert ds.index_path is not None and ds.index_path.parent == tmp_path / "cache"
    stamp = ds.index_path.stat().st_mtime_ns
    assert len(open_dataset(path)) == 3
    assert ds.index_path.stat().st_mtime_ns == stamp  # found there next time, not rebuilt


def test_oc20_uses_fairchem_metadata_for_natoms(tmp_path: Path) -> None:
    structures = _structures(4)
    path = _write_shards(tmp_path / "shards", structures)
    fake = np.array([7, 7, 7, 7])  # fairchem's counts are trusted, so a wrong one shows up
    np.savez(path / "metadata.npz", natoms=fake)
    ds = open_dataset(path)
    np.testing.assert_array_equal(ds.natoms, fake)
    with pytest.raises(DataError, match="index says 7"):
        ds[0]


def _read_in_child(ds, i: int, queue) -> None:  # noqa: ANN001
    queue.put(ds[i].positions.tolist())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_datasets_work_in_worker_processes(tmp_path: Path, method: str) -> None:
    structures = _structures(4)
    ds = open_dataset(_write_shards(tmp_path / "shards", structures))
    ds[0]  # the parent holds an open handle; the child must not reuse it
    ctx = mp.get_context(method)
    queue = ctx.Queue()
    proc = ctx.Process(target=_read_in_child, args=(ds, 3, queue))
    proc.start()
    got = queue.get(timeout=60)
    proc.join(60)
    np.testing.assert_allclose(got, structures[3].positions, atol=1e-6)
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == 4 and clone[1].info["index"] == 1


def test_list_dataset() -> None:
    structures = _structures(3)
    ds = ListDataset([structures[0], to_atoms(structures[1]), structures[2]])
    assert len(ds) == 3 and ds.nedges is None
    np.testing.assert_array_equal(ds.natoms, [2, 3, 4])
    assert ds[-1] is structures[2]
    np.testing.assert_array_equal(ds[1].forces, structures[1].forces)
    no_label = _structures(1)[0]
    no_label.forces = None
    with pytest.raises(DataError, match="field 'forces' is required but absent"):
        ListDataset([no_label], require=("forces",))


def test_missing_label_names_record_and_field(tmp_path: Path) -> None:
    structures = _structures(3)
    structures[1].forces = None
    ds = open_dataset(_write_extxyz(tmp_path / "a.extxyz", structures), require=("forces",))
    ds[0]
    with pytest.raises(DataError, match=r"a\.extxyz, structure 1: field 'forces' is required"):
        ds[1]
