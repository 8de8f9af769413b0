"""A restricted unpickler for OC20 LMDB records (pickled torch_geometric ``Data`` objects).

Loading never runs code from the file: ``find_class`` resolves only the globals listed in
:data:`ALLOWED`, each mapped to a known-safe callable, and refuses everything else (for
example ``os.system`` in a malicious ``__reduce__``) with :class:`UnsafePickleError`.
torch_geometric need not be installed: its ``Data``/storage classes map to the plain stand-ins
below, which only store the attribute dict they are given.

Allow-list (module, name) -> what it becomes:

- ``torch_geometric.data.data``: ``Data``, ``DataEdgeAttr``, ``DataTensorAttr`` ->
  :class:`PygData` (attributes kept from either the PyG<2 ``__dict__`` layout or the PyG>=2
  ``_store`` layout); ``torch_geometric.data.storage``: ``GlobalStorage``, ``BaseStorage`` ->
  :class:`PygStorage`; ``torch_geometric.data.batch.Batch`` -> :class:`PygData`.
- torch: ``torch._utils._rebuild_tensor``/``_rebuild_tensor_v2``/``_rebuild_parameter``,
  ``torch._tensor._rebuild_from_type_v2``, ``torch.Tensor``, ``torch.Size``, ``torch.device``,
  the dtypes, and ``torch.storage._load_from_bytes`` -> a replacement that reads the nested
  storage bytes with ``torch.load(weights_only=True)`` (the original uses ``weights_only=False``).
- numpy: ``multiarray._reconstruct``, ``multiarray.scalar``, ``numeric._frombuffer`` (under
  both ``numpy.core`` and ``numpy._core``), ``ndarray``, ``dtype``, ``numpy.dtypes.*DType``.
- ``_codecs.encode`` restricted to latin-1 (how protocol 2 stores bytes),
  ``collections.OrderedDict``, ``builtins.complex``, ``builtins.set``, ``builtins.frozenset``.
"""

from __future__ import annotations

import functools
import io
import pickle
from typing import Any

from eqv2.data.errors import UnsafePickleError

__all__ = ["PygData", "PygStorage", "TensorShape", "allowed_globals", "safe_loads"]


class PygStorage(dict):
    """Stand-in for torch_geometric's ``GlobalStorage``: a dict of the stored attributes."""

    def __setstate__(self, state: Any) -> None:
        # PyG pickles a storage as its __dict__: {'_mapping': {...}, '_parent': Data, ...}.
        if isinstance(state, dict):
            mapping = state.get("_mapping", {})
            if isinstance(mapping, dict):
                self.update(mapping)


class PygData:
    """Stand-in for torch_geometric's ``Data``; :meth:`attributes` gives its fields as a dict."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_attrs"] = dict(kwargs)

    def __setstate__(self, state: Any) -> None:
        # Setting via __dict__ only: nothing from the file can trigger custom attribute logic.
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            state = {}
        self.__dict__["_state"] = state

    def attributes(self) -> dict[str, Any]:
        """The record's fields: the PyG>=2 ``_store`` mapping or the PyG<2 ``__dict__``."""
        state = self.__dict__.get("_state", self.__dict__.get("_attrs", {}))
        store = state.get("_store")
        if isinstance(store, dict):
            return dict(store)
        return {k: v for k, v in state.items() if not k.startswith("_")}


class TensorShape(tuple):
    """What a tensor becomes in a shapes-only load: its size, its data never decoded."""


def _skip_storage(b: bytes) -> None:
    return None


def _shape_v2(storage: Any, offset: Any, size: Any, *args: Any) -> TensorShape:
    return TensorShape(size)


def _shape_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    return func(*args)


def _parameter_shape(data: Any, *args: Any) -> Any:
    return data


def _storage_from_bytes(b: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(b), weights_only=True)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles write bytes as ``_codecs.encode(str, "latin1")``; allow that only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _passthrough(value: Any = None) -> Any:
    """Enum-like PyG globals (e.g. ``EdgeLayout('coo')``) become their plain value."""
    return value


def _build_allowed() -> dict[tuple[str, str], Any]:
    import collections

    import numpy as np

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "complex"): complex,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    }
    for mod in ("torch_geometric.data.data", "torch_geometric.data.batch"):
        for name in ("Data", "DataEdgeAttr", "DataTensorAttr", "Batch"):
            allowed[(mod, name)] = PygData
    for name in ("GlobalStorage", "BaseStorage"):
        allowed[("torch_geometric.data.storage", name)] = PygStorage
    for mod in ("torch_geometric.typing", "torch_geometric.data.feature_store"):
        allowed[(mod, "EdgeLayout")] = _passthrough
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = np._core.multiarray._reconstruct  # type: ignore[attr-defined]
        allowed[(mod, "scalar")] = np._core.multiarray.scalar  # type: ignore[attr-defined]
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        # numpy>=2 pickles arrays with protocol 5 as _frombuffer(bytes, dtype, shape, order).
        allowed[(mod, "_frombuffer")] = np._core.numeric._frombuffer  # type: ignore[attr-defined]
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    import numpy.dtypes as npd

    for name in dir(npd):
        if name.endswith("DType"):
            allowed[("numpy.dtypes", name)] = getattr(npd, name)
    try:
        import torch
        import torch._tensor
        import torch._utils
    except ImportError:  # pragma: no cover - torch is an eqv2 dependency
        return allowed
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter"):
        allowed[("torch._utils", name)] = getattr(torch._utils, name)
    allowed[("torch._tensor", "_rebuild_from_type_v2")] = torch._tensor._rebuild_from_type_v2
    allowed[("torch.storage", "_load_from_bytes")] = _storage_from_bytes
    allowed[("torch", "Tensor")] = torch.Tensor
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch", "device")] = torch.device
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    return allowed


@functools.cache
def allowed_globals() -> dict[tuple[str, str], Any]:
    """The allow-list, built on first use (so importing eqv2.data does not import torch)."""
    return _build_allowed()


@functools.cache
def _shape_only_globals() -> dict[tuple[str, str], Any]:
    """The allow-list with torch tensors replaced by their :class:`TensorShape`.

    Decoding each tensor's nested storage (a ``torch.load``) is ~90 % of the cost of loading an
    OC20 record; an index only needs sizes, which the pickle stream states directly.
    """
    allowed = dict(allowed_globals())
    if ("torch.storage", "_load_from_bytes") in allowed:
        allowed[("torch.storage", "_load_from_bytes")] = _skip_storage
        allowed[("torch._utils", "_rebuild_tensor")] = _shape_v2
        allowed[("torch._utils", "_rebuild_tensor_v2")] = _shape_v2
        allowed[("torch._utils", "_rebuild_parameter")] = _parameter_shape
        allowed[("torch._tensor", "_rebuild_from_type_v2")] = _shape_from_type
    return allowed


def __getattr__(name: str) -> Any:  # ``ALLOWED`` as a lazily built module attribute
    if name == "ALLOWED":
        return allowed_globals()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, label: str, shapes_only: bool = False) -> None:
        super().__init__(io.BytesIO(data))
        self._label = label
        self._allowed = _shape_only_globals() if shapes_only else allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._label}: refused to load global '{module}.{name}' (not on eqv2's "
                "allow-list for OC20 records; loading never runs code from a file). Fix: if "
                "the file is trusted, convert it to an eqv2 store or extxyz with the tool "
                "that wrote it; otherwise do not use it."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(
            f"{self._label}: record uses a pickle persistent id ({pid!r}), which OC20 "
            "records never do. Fix: re-export the data as plain pickled Data objects."
        )


def safe_loads(data: bytes, label: str = "<bytes>", shapes_only: bool = False) -> Any:
    """Unpickle ``data`` with the restricted allow-list; ``label`` prefixes error messages.

    With ``shapes_only`` torch tensors come back as :class:`TensorShape` (their size) without
    decoding their data: for indexing, where only atom counts matter.

    Raises:
        UnsafePickleError: a global outside :data:`ALLOWED` was referenced (nothing is run).
        pickle.UnpicklingError, EOFError, ...: corrupt bytes (callers wrap these in DataError).
    """
    return _RestrictedUnpickler(data, label, shapes_only).load()
