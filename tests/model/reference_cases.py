"""Helpers to rebuild the reference fixture's inputs and model (../shared/reference/eqv2_small)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from eqv2.fairchem import from_fairchem_state_dict
from eqv2.model import EquiformerV2, EquiformerV2Config

CASES = ["0", "1", "2", "3", "batch"]


def prefix(case: str) -> str:
    return "batch_" if case == "batch" else f"s{case}_"


def fixture_config(fixture_dir: Path) -> EquiformerV2Config:
    return EquiformerV2Config.from_dict(
        json.loads((fixture_dir / "config.json").read_text())["backbone_config"]
    )


def fixture_model(fixture_dir: Path, state_dict, dtype=torch.float64, **kwargs) -> EquiformerV2:
    """EquiformerV2 with the fixture's parameters, in ``dtype`` (float32 weights cast exactly)."""
    model = EquiformerV2(fixture_config(fixture_dir), **kwargs)
    params, _, _ = from_fairchem_state_dict(state_dict)
    model.load_state_dict(params)
    return model.to(dtype).eval()


def structure_indices(ref: dict, case: str) -> list[int]:
    return [int(i) for i in ref["batch_members"]] if case == "batch" else [int(case)]


def atoms_of(ref: dict, i: int) -> Atoms:
    return Atoms(
        numbers=ref[f"s{i}_numbers"],
        positions=ref[f"s{i}_pos"],
        cell=ref[f"s{i}_cell"],
        pbc=ref[f"s{i}_pbc"],
    )


def replay_graph(ref: dict, case: str, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """The reference's own graph, edge vectors and edge frames for ``case``."""
    p = prefix(case)
    members = structure_indices(ref, case)
    numbers = np.concatenate([ref[f"s{i}_numbers"] for i in members])
    natoms = np.array([len(ref[f"s{i}_numbers"]) for i in members])
    return {
        "atomic_numbers": torch.as_tensor(numbers, dtype=torch.long),
        "batch": torch.repeat_interleave(torch.arange(len(members)), torch.as_tensor(natoms)),
        "natoms": torch.as_tensor(natoms),
        "edge_index": torch.as_tensor(ref[p + "edge_index"], dtype=torch.long),
        "edge_vec": torch.as_tensor(ref[p + "edge_distance_vec"], dtype=dtype),
        "edge_rot": torch.as_tensor(ref[p + "edge_rot_mat"], dtype=dtype),
    }
