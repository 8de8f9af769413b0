"""OC20 LMDB reader: records pickled as torch_geometric Data (PyG 1 and 2 layouts), written here
without torch_geometric; the restricted unpickler refuses anything else without running it."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eqv2.data import DataError, UnsafePickleError, detect_format, read_structures
from eqv2.data.unpickle import PygData, safe_loads

from .oc20_writer import as_float32, oc20_fields, pickle_record, write_oc20_lmdb
from .strategies import random_structure, same_physics


def test_torch_geometric_is_not_needed() -> None:
    # The reader must work where torch_geometric is absent (as in eqv2's own environment).
    import importlib.util

    assert importlib.util.find_spec("torch_geometric") is None


@pytest.mark.parametrize("layout", [1, 2])
def test_round_trip_both_layouts(tmp_path: Path, layout: int) -> None:
    structs = [random_structure(i, 2 + i) for i in range(6)]
    for i, s in enumerate(structs):
        s.info["index"] = i
    structs[4].energy = None
    structs[4].forces = None
    path = write_oc20_lmdb(
        tmp_path / "s2ef.lmdb", [pickle_record(oc20_fields(s), layout) for s in structs]
    )
    assert detect_format(path) == "oc20-lmdb"
    back = read_structures(path)
    assert len(back) == 6
    for i, (a, b) in enumerate(zip(structs, back, strict=True)):
        assert same_physics(as_float32(a), b)
        assert b.info["sid"] == 1000 + i and b.info["fid"] == 3 and b.info["natoms"] == len(a)
        assert b.info["index"] == i and b.info["source"] == str(path)
        assert "y" not in b.info  # the label is not duplicated as metadata


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 30), layout=st.sampled_from([1, 2]))
def test_random_records_round_trip(tmp_path: Path, seed: int, n: int, layout: int) -> None:
    s = random_structure(seed, n, labels=True)
    path = tmp_path / f"r{seed}_{n}_{layout}.lmdb"
    write_oc20_lmdb(path, [pickle_record(oc20_fields(s), layout)])
    (b,) = read_structures(path, require=("energy", "forces"))
    assert same_physics(as_float32(s), b)


def test_numpy_fields_energy_key_and_no_length_key(tmp_path: Path) -> None:
    s = random_structure(7, 5)
    fields = {
        "atomic_numbers": s.numbers,  # numpy arrays instead of tensors, as some tools write
        "pos": s.positions,
        "cell": s.cell[None],
        "y_init": 1.5,
        "y_relaxed": np.float64(-2.25),
        "pos_relaxed": s.positions + 0.1,
        "tags": s.tags,
        "sid": "random123",
    }
    path = write_oc20_lmdb(tmp_path / "is2re.lmdb", [pickle_record(fields, 1)], with_length=False)
    (b,) = read_structures(path, energy_key="y_relaxed", require=("energy",))
    assert b.energy == -2.25 and b.info["y_init"] == 1.5 and b.info["sid"] == "random123"
    assert np.array_equal(b.positions, s.positions) and b.pbc.all()  # no pbc field: periodic
    assert b.forces is None and not b.fixed.any()
    # non-scalar numeric fields are kept as targets (IS2RS: relaxed positions)
    assert list(b.targets) == ["pos_relaxed"]
    assert np.array_equal(b.targets["pos_relaxed"], s.positions + 0.1)


def test_array_fields_become_targets_but_graph_fields_do_not(tmp_path: Path) -> None:
    s = random_structure(3, 4)
    fields = oc20_fields(s)
    fields["dipole"] = torch.tensor([0.5, -1.0, 2.0])  # per-structure vector
    fields["charges"] = torch.arange(len(s), dtype=torch.float32)  # per-atom
    fields["edge_index"] = torch.zeros((2, 6), dtype=torch.long)  # precomputed graph
    fields["mask"] = torch.ones(len(s), dtype=torch.bool)  # not numeric: ignored
    (b,) = read_structures(write_oc20_lmdb(tmp_path / "t.lmdb", [pickle_record(fields, 2)]))
    assert sorted(b.targets) == ["charges", "dipole"]
    assert np.array_equal(b.targets["dipole"], [0.5, -1.0, 2.0])
    assert np.array_equal(b.targets["charges"], np.arange(len(s)))


def test_shard_directory_and_index(tmp_path: Path) -> None:
    shards = tmp_path / "train"
    shards.mkdir()
    structs = [random_structure(i, 3) for i in range(5)]
    write_oc20_lmdb(
        shards / "data.0000.lmdb", [pickle_record(oc20_fields(s), 2) for s in structs[:3]]
    )
    write_oc20_lmdb(
        shards / "data.0001.lmdb", [pickle_record(oc20_fields(s), 2) for s in structs[3:]]
    )
    back = read_structures(shards)
    assert [b.info["index"] for b in back] == [0, 1, 2, 3, 4]
    assert all(same_physics(as_float32(a), b) for a, b in zip(structs, back, strict=True))
    last = read_structures(shards, index=-1)
    assert len(last) == 1 and last[0].info["index"] == 4
    assert back[3].info["source"].endswith("data.0001.lmdb")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_malicious_record_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    good = pickle_record(oc20_fields(random_structure(0, 3)), 2)
    path = write_oc20_lmdb(tmp_path / "evil.lmdb", [good, pickle.dumps(_Evil(marker), protocol=-1)])
    with pytest.raises(
        UnsafePickleError, match=r"evil\.lmdb, structure 1 \(record key b'1'\): refused.*system"
    ):
        read_structures(path)
    assert not marker.exists()
    # The evil object nested inside an otherwise normal record is refused too.
    fields = oc20_fields(random_structure(0, 3))
    fields["payload"] = _Evil(marker)
    path = write_oc20_lmdb(tmp_path / "nested.lmdb", [pickle_record(fields, 1)])
    with pytest.raises(UnsafePickleError, match=r"nested\.lmdb, structure 0 \(record key b'0'\)"):
        read_structures(path)
    assert not marker.exists()


def test_unpickler_allows_tensors_and_arrays_only() -> None:
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)[:, 1:]  # non-contiguous view
    assert torch.equal(safe_loads(pickle.dumps(t, protocol=-1)), t)
    a = np.arange(4, dtype=np.int32)
    assert np.array_equal(safe_loads(pickle.dumps(a, protocol=2)), a)
    for obj in (print, Path("x"), slice(1)):
        with pytest.raises(UnsafePickleError, match="refused to load global"):
            safe_loads(pickle.dumps(obj), "lbl")
    assert isinstance(safe_loads(pickle_record({"pos": 1}, 2)), PygData)


def test_truncated_record_is_named(tmp_path: Path) -> None:
    recs = [pickle_record(oc20_fields(random_structure(i, 4)), 2) for i in range(3)]
    recs[2] = recs[2][: len(recs[2]) // 2]
    path = write_oc20_lmdb(tmp_path / "cut.lmdb", recs)
    with pytest.raises(
        DataError,
        match=r"cut\.lmdb, structure 2 \(record key b'2'\): record is truncated or corrupt",
    ):
        read_structures(path)


@pytest.mark.parametrize("fraction", [0.6, 0.01])
def test_truncated_file_is_refused_not_crashing(tmp_path: Path, fraction: float) -> None:
    recs = [pickle_record(oc20_fields(random_structure(i, 40)), 2) for i in range(20)]
    full = write_oc20_lmdb(tmp_path / "full.lmdb", recs)
    cut = tmp_path / "half.lmdb"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * fraction)])
    with pytest.raises(DataError, match=r"half\.lmdb: .*(truncated|not a readable LMDB)"):
        read_structures(cut)


def test_missing_record_empty_lmdb_and_bad_fields(tmp_path: Path) -> None:
    import lmdb

    path = write_oc20_lmdb(
        tmp_path / "short.lmdb", [pickle_record(oc20_fields(random_structure(0, 2)), 1)]
    )
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"length", pickle.dumps(2))
    env.close()
    with pytest.raises(
        DataError, match=r"short\.lmdb, structure 1 \(record key b'1'\): record is missing"
    ):
        read_structures(path)
    empty = write_oc20_lmdb(tmp_path / "empty.lmdb", [])
    with pytest.raises(DataError, match=r"empty\.lmdb: LMDB dataset has no records"):
        read_structures(empty)
    (tmp_path / "zero.lmdb").write_bytes(b"")
    with pytest.raises(DataError, match=r"zero\.lmdb: file is empty"):
        read_structures(tmp_path / "zero.lmdb")
    fields = oc20_fields(random_structure(1, 3))
    fields["atomic_numbers"] = torch.tensor([1.0, 0.0, 6.0])
    fields["force"] = torch.zeros(3, 2)
    bad = write_oc20_lmdb(tmp_path / "bad.lmdb", [pickle_record(fields, 2)])
    with pytest.raises(DataError, match=r"bad\.lmdb, structure 0: field 'numbers'.*Z=0"):
        read_structures(bad)
    fields["atomic_numbers"] = torch.tensor([1.0, 8.0, 6.0])
    bad = write_oc20_lmdb(tmp_path / "bad2.lmdb", [pickle_record(fields, 2)])
    with pytest.raises(DataError, match=r"bad2\.lmdb, structure 0: field 'forces' has shape"):
        read_structures(bad)
    fields["force"] = torch.zeros(3, 3)
    fields["y"] = float("nan")
    bad = write_oc20_lmdb(tmp_path / "bad3.lmdb", [pickle_record(fields, 2)])
    with pytest.raises(DataError, match=r"bad3\.lmdb, structure 0: field 'energy' is nan"):
        read_structures(bad)
    fields["y"] = 1.0
    fields["natoms"] = 4
    bad = write_oc20_lmdb(tmp_path / "bad5.lmdb", [pickle_record(fields, 2)])
    with pytest.raises(DataError, match=r"bad5\.lmdb, structure 0: field 'natoms' is 4"):
        read_structures(bad)
    del fields["pos"]
    bad = write_oc20_lmdb(tmp_path / "bad4.lmdb", [pickle_record(fields, 1)])
    with pytest.raises(DataError, match=r"bad4\.lmdb, structure 0: field 'pos' is missing"):
        read_structures(bad)


def test_tensor_storages_are_read_directly_and_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    from eqv2.data import unpickle

    used = []
    direct = unpickle._fast_storage
    monkeypatch.setattr(
        unpickle, "_fast_storage", lambda b: used.append(direct(b) is not None) or direct(b)
    )
    base = torch.arange(12) % 5
    for dtype in (torch.float32, torch.float64, torch.int64, torch.bool, torch.uint8, torch.int8):
        t = base.to(dtype).reshape(3, 4)
        for obj in (t, t[:, 1:], t.T, torch.zeros((0, 3), dtype=dtype), t[1, 2]):
            got = safe_loads(pickle.dumps(obj, protocol=-1))
            assert got.dtype == obj.dtype and got.stride() == obj.stride()
            assert torch.equal(got, obj)
    assert used and all(used)  # no fallback to torch.load for these
    # an unusual storage (complex) still loads, through torch.load(weights_only=True)
    z = torch.ones(3, dtype=torch.complex64)
    assert torch.equal(safe_loads(pickle.dumps(z, protocol=-1)), z)
    assert used[-1] is False
