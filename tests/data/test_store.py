"""eqv2 store: exact round trips, edge counts, atomic writes, convert, corrupt records."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import lmdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqv2.data import (
    DataError,
    convert,
    detect_format,
    open_store,
    read_structures,
    split_indices,
    write_store,
)
from eqv2.data.store import decode_record, encode_record
from eqv2.graph import radius_graph

from ..conftest import SHARED
from .oc20_writer import oc20_fields, pickle_record, write_oc20_lmdb
from .strategies import random_structure, structures


@settings(max_examples=40, deadline=None)
@given(structures)
def test_record_codec_is_exact(s) -> None:  # noqa: ANN001
    s.info.update(source="a.extxyz", index=3, weird="ünï", flag=True, value=0.1 + 0.2)
    assert decode_record(encode_record(s)).equals(s)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(structures, min_size=1, max_size=6))
def test_store_round_trip_is_exact(tmp_path: Path, structs) -> None:  # noqa: ANN001
    path = write_store(structs, tmp_path / "s.lmdb", overwrite=True, metadata={"note": "x"})
    ds = open_store(path)
    assert len(ds) == len(structs)
    assert ds.natoms.tolist() == [len(s) for s in structs] and ds.nedges is None
    assert all(ds[i].equals(s) for i, s in enumerate(structs))
    assert ds[-1].equals(structs[-1])
    assert ds.metadata["user"] == {"note": "x"} and ds.metadata["count"] == len(structs)
    assert detect_format(path) == "store"
    assert all(a.equals(b) for a, b in zip(read_structures(path), structs, strict=True))


def test_nedges_match_radius_graph_and_dataset_pickles(tmp_path: Path) -> None:
    from ase.build import fcc111

    from eqv2.data import from_atoms

    slab = from_atoms(fcc111("Cu", (2, 2, 3), vacuum=6.0))
    mol = random_structure(5, 4)
    mol.pbc[:] = False
    mol.positions = np.array([[0, 0, 0], [1.0, 0, 0], [0, 1.5, 0], [0, 0, 2.5]])
    ds = open_store(write_store([slab, mol], tmp_path / "g.lmdb", cutoff=3.0, max_neighbors=8))
    expect = [
        radius_graph(s.positions, s.cell, s.pbc, 3.0, 8).edge_index.shape[1] for s in (slab, mol)
    ]
    assert ds.nedges.tolist() == expect and ds.metadata["cutoff"] == 3.0
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))  # DataLoader workers receive a pickled dataset
    assert clone[1].equals(mol)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def gen():  # noqa: ANN202
        yield random_structure(0, 3)
        bad = random_structure(1, 3)
        bad.forces[0, 0] = np.nan
        yield bad

    with pytest.raises(DataError, match="field 'forces' contains NaN"):
        write_store(gen(), tmp_path / "s.lmdb")
    assert list(tmp_path.iterdir()) == []
    old = write_store([random_structure(2, 2)], tmp_path / "s.lmdb")
    with pytest.raises(DataError, match="already exists"):
        write_store([random_structure(3, 2)], old)
    with pytest.raises(RuntimeError):
        write_store((_ for _ in [random_structure(3, 2)] if _raise()), old, overwrite=True)
    assert open_store(old)[0].equals(random_structure(2, 2))  # last good store intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.lmdb"]
    with pytest.raises(DataError, match="required but absent"):
        write_store(
            [random_structure(4, 2, labels=False)], tmp_path / "t.lmdb", require=("energy",)
        )
    with pytest.raises(DataError, match="no structures to write"):
        write_store([], tmp_path / "t.lmdb")


def _raise() -> bool:
    raise RuntimeError("disk on fire")


def test_corrupt_store_record_and_non_store(tmp_path: Path) -> None:
    path = write_store([random_structure(i, 3) for i in range(3)], tmp_path / "s.lmdb")
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        raw = txn.get(b"1")
        txn.put(b"1", raw[: len(raw) - 10])
    env.close()
    ds = open_store(path)
    ds[0]
    with pytest.raises(DataError, match=r"s\.lmdb, structure 1: store record fails its CRC-32"):
        ds[1]
    oc20 = write_oc20_lmdb(
        tmp_path / "o.lmdb", [pickle_record(oc20_fields(random_structure(0, 2)), 2)]
    )
    with pytest.raises(DataError, match=r"o\.lmdb: not an eqv2 store"):
        open_store(oc20)


def test_convert_from_files(tmp_path: Path) -> None:
    oc20 = write_oc20_lmdb(
        tmp_path / "o.lmdb",
        [pickle_record(oc20_fields(random_structure(i, 4)), 1) for i in range(3)],
    )
    ds = convert([oc20, oc20], tmp_path / "out.lmdb", cutoff=4.0, require=("energy", "forces"))
    assert len(ds) == 6 and ds.nedges is not None
    assert ds.metadata["user"]["inputs"] == [str(oc20)] * 2
    assert ds.metadata["user"]["reader"]["require"] == ["energy", "forces"]
    assert ds[4].info["source"] == str(oc20) and ds[4].info["index"] == 1
    real = SHARED / "data" / "oc_samples" / "oc20_random1447590_relaxation.extxyz"
    if real.exists():
        ds = convert(real, tmp_path / "real.lmdb", cutoff=6.0, max_neighbors=20)
        assert len(ds) == 47 and ds.natoms.tolist() == [17] * 47 and ds[0].fixed.sum() == 10
        assert all(ds[i].equals(s) for i, s in enumerate(read_structures(real)))


def test_split_indices() -> None:
    tr, va, te = split_indices(103, seed=1)
    assert (len(tr), len(va), len(te)) == (82, 11, 10)  # cut at round(0.8n), round(0.9n)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(103))
    again = split_indices(103, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    assert not np.array_equal(split_indices(103, seed=2)[0], tr)
    a, b = split_indices(10, (0.5, 0.2))
    assert len(a) == 5 and len(b) == 2 and not set(a) & set(b)
    with pytest.raises(ValueError, match="sum to <= 1"):
        split_indices(10, (0.8, 0.3))


def test_store_reads_after_fork(tmp_path: Path) -> None:
    import multiprocessing

    structs = [random_structure(i, 3) for i in range(4)]
    ds = open_store(write_store(structs, tmp_path / "f.lmdb"))
    assert ds[0].equals(structs[0])  # the parent holds an open handle before forking
    read_structures(tmp_path / "f.lmdb")  # a second reader of the same file shares it
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        energies = pool.map(_energy, [(ds, i) for i in range(4)])
    assert energies == [s.energy for s in structs]
    assert ds[3].equals(structs[3])
    # A forked child inherits the dataset object itself (with the parent's open handle).
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must reopen, not reuse the parent's handle
        try:
            ok = ds[2].equals(structs[2]) and read_structures(tmp_path / "f.lmdb")[1].equals(
                structs[1]
            )
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    assert ds[1].equals(structs[1])


def _energy(args):  # noqa: ANN001, ANN202
    ds, i = args
    return ds[i].energy
