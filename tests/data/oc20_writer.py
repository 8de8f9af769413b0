"""Write LMDB files in the OC20 record format without torch_geometric installed.

Pickle records a class by its ``__module__`` and ``__qualname__`` and checks that importing that
module finds the class, so throwaway classes are registered under torch_geometric's module names
in ``sys.modules`` for the duration of the pickling only.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
import torch

from eqv2.data import Structure


class Data:  # PyG<2 layout: attributes live in __dict__
    pass


class Data2:  # PyG>=2 layout: __dict__ == {"_store": GlobalStorage}
    pass


class GlobalStorage:  # PyG>=2: pickled __dict__ is {"_mapping": {...}, "_parent": data}
    pass


Data.__module__ = Data2.__module__ = "torch_geometric.data.data"
Data.__qualname__ = Data2.__qualname__ = Data.__name__ = Data2.__name__ = "Data"
GlobalStorage.__module__ = "torch_geometric.data.storage"


class DataTensorAttr:  # PyG>=2.1 keeps these classes (not instances) in Data.__dict__
    pass


class DataEdgeAttr:
    pass


DataTensorAttr.__module__ = DataEdgeAttr.__module__ = "torch_geometric.data.data"

_MODULES = (
    "torch_geometric",
    "torch_geometric.data",
    "torch_geometric.data.data",
    "torch_geometric.data.storage",
)


@contextlib.contextmanager
def fake_pyg(data_cls: type) -> Iterator[None]:
    """Make ``torch_geometric.data.data.Data`` resolve to ``data_cls`` while pickling."""
    saved = {m: sys.modules.get(m) for m in _MODULES}
    try:
        for m in _MODULES:
            sys.modules[m] = types.ModuleType(m)
        mod = sys.modules["torch_geometric.data.data"]
        mod.Data = data_cls  # type: ignore[attr-defined]
        mod.DataTensorAttr = DataTensorAttr  # type: ignore[attr-defined]
        mod.DataEdgeAttr = DataEdgeAttr  # type: ignore[attr-defined]
        sys.modules["torch_geometric.data.storage"].GlobalStorage = GlobalStorage  # type: ignore[attr-defined]
        yield
    finally:
        for m, mod in saved.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod


def oc20_fields(s: Structure) -> dict[str, Any]:
    """The fields fairchem's S2EF preprocessing stores, as torch tensors (float32 like OC20)."""
    n = len(s)
    fields: dict[str, Any] = {
        "atomic_numbers": torch.tensor(s.numbers, dtype=torch.float32),
        "pos": torch.tensor(s.positions, dtype=torch.float32),
        "cell": torch.tensor(s.cell, dtype=torch.float32).view(1, 3, 3),
        "natoms": n,
        "tags": torch.tensor(s.tags, dtype=torch.long),
        "fixed": torch.tensor(s.fixed, dtype=torch.float32),
        "sid": 1000 + int(s.info.get("index", 0)),
        "fid": 3,
        "edge_index": torch.zeros((2, 0), dtype=torch.long),
        "cell_offsets": torch.zeros((0, 3), dtype=torch.float32),
        "pbc": torch.tensor(s.pbc).view(1, 3),
    }
    if s.energy is not None:
        fields["y"] = s.energy  # S2EF LMDBs store a python float
    if s.forces is not None:
        fields["force"] = torch.tensor(s.forces, dtype=torch.float32)
    return fields


def pickle_record(fields: dict[str, Any], layout: int) -> bytes:
    """``pickle.dumps(data, protocol=-1)`` of a PyG-1 (``layout=1``) or PyG-2 ``Data``."""
    if layout == 1:
        data = Data()
        data.__dict__.update(fields)
        data.__dict__["__num_nodes__"] = fields.get("natoms")
        with fake_pyg(Data):
            return pickle.dumps(data, protocol=-1)
    data = Data2()
    store = GlobalStorage()
    store.__dict__.update({"_mapping": dict(fields), "_key": None, "_parent": data})
    data.__dict__.update(
        {"_store": store, "_tensor_attr_cls": DataTensorAttr, "_edge_attr_cls": DataEdgeAttr}
    )
    with fake_pyg(Data2):
        return pickle.dumps(data, protocol=-1)


def write_oc20_lmdb(path: Path, records: Sequence[bytes], *, with_length: bool = True) -> Path:
    """Write records under keys ``b"0"``, ``b"1"``, ... (and ``b"length"``) like fairchem."""
    env = lmdb.open(str(path), subdir=False, map_size=1 << 26, meminit=False, lock=False)
    with env.begin(write=True) as txn:
        for i, rec in enumerate(records):
            txn.put(f"{i}".encode("ascii"), rec)
        if with_length:
            txn.put(b"length", pickle.dumps(len(records), protocol=-1))
    env.sync()
    env.close()
    return path


def as_float32(s: Structure) -> Structure:
    """What a float32 OC20 record of ``s`` reads back as."""
    out = s.copy()
    out.positions = s.positions.astype(np.float32).astype(np.float64)
    out.cell = s.cell.astype(np.float32).astype(np.float64)
    if s.forces is not None:
        out.forces = s.forces.astype(np.float32).astype(np.float64)
    out.stress = None
    return out
