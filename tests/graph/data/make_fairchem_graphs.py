"""Regenerate ``fairchem_graphs.npz``: the reference's graphs of the 4 fixture structures at
several neighbour caps, strict and non-strict (the shared fixtures only hold cap 20, strict).

Run with the reference environment (fairchem-core 1.10: ``EQV2_REFERENCE_PYTHON``, see
docs/benchmarks.md), never from the test suite::

    $EQV2_REFERENCE_PYTHON tests/graph/data/make_fairchem_graphs.py
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from fairchem.core.common.utils import radius_graph_pbc

HERE = Path(__file__).resolve().parent
FIXTURE = HERE.parents[3] / "shared" / "reference" / "eqv2_small" / "reference.npz"
CUTOFF = 6.0
CAPS = (8, 12, 20)


def main() -> None:
    src = np.load(FIXTURE)
    out = {"cutoff": np.array(CUTOFF), "caps": np.array(CAPS)}
    for i in range(4):
        data = SimpleNamespace(
            pos=torch.tensor(src[f"s{i}_pos"], dtype=torch.float32),
            cell=torch.tensor(src[f"s{i}_cell"], dtype=torch.float32)[None],
            natoms=torch.tensor([len(src[f"s{i}_pos"])]),
            pbc=torch.tensor(src[f"s{i}_pbc"])[None],
        )
        for cap in CAPS:
            for strict in (True, False):
                edge_index, offsets, _ = radius_graph_pbc(
                    data, CUTOFF, cap, enforce_max_neighbors_strictly=strict
                )
                key = f"s{i}_cap{cap}_{'strict' if strict else 'loose'}"
                out[f"{key}_edge_index"] = edge_index.numpy().astype(np.int16)
                out[f"{key}_cell_offsets"] = offsets.numpy().astype(np.int8)
    np.savez_compressed(HERE / "fairchem_graphs.npz", **out)


if __name__ == "__main__":
    main()
