"""Writing a generated dataset: S2EF and IS2RE/IS2RS extxyz per split, and ``metadata.json``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import ase
import numpy as np
from ase.io import write as ase_write

from eqv2.data.generate.config import EMT_STATEMENT, SPLITS
from eqv2.data.generate.records import GeneratedDataset
from eqv2.data.generate.slabs import emt_lattice_constant
from eqv2.safe_io import atomic_write_path

__all__ = ["write_dataset"]


def write_dataset(
    ds: GeneratedDataset,
    out_dir: str | Path,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> dict[str, Path]:
    """Write ``ds`` under ``out_dir``; return ``{name: path}`` of the files written.

    Files (each written atomically: temporary name, fsync, rename):

    - ``train.extxyz``, ``val.extxyz``, ``test.extxyz``: S2EF frames, split by system;
    - ``is2re_train.extxyz`` etc.: per system two frames, the initial structure
      (``kind="initial"``, ``info["energy_relaxed"]``, ``arrays["pos_relaxed"]``) then the relaxed
      one (``kind="relaxed"``); they serve IS2RE and IS2RS;
    - ``metadata.json``: seed, parameters, counts, split system ids, EMT lattice constants and
      the statement that EMT stands in for DFT.

    Energies and forces are stored so ``ase.io.read`` returns them through a
    ``SinglePointCalculator``; fixed atoms come back as ``FixAtoms`` (extxyz ``move_mask``), tags
    through the ``tags`` column. A split whose fraction is 0 is not written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = ds.split_ids(fractions)
    by_id = {s.system_id: s for s in ds.systems}
    written: dict[str, Path] = {}
    counts: dict[str, dict[str, int]] = {}
    for name in SPLITS:
        ids = splits[name]
        if not ids:
            continue
        frames = ds.frames_of(ids)
        pairs = [a for i in ids for a in (by_id[i].initial, by_id[i].relaxed)]
        for label, images in ((name, frames), (f"is2re_{name}", pairs)):
            path = out / f"{label}.extxyz"
            with atomic_write_path(path) as tmp:
                ase_write(tmp, images, format="extxyz")
            written[label] = path
        counts[name] = {
            "systems": len(ids),
            "frames": len(frames),
            "atoms": int(sum(len(a) for a in frames)),
        }
    metadata = {
        "generator": "eqv2.data.generate",
        "labels": EMT_STATEMENT,
        "seed": ds.seed,
        "n_systems": len(ds.systems),
        "n_frames": len(ds.s2ef_frames),
        "parameters": ds.config.to_dict(),
        "split_fractions": [float(f) for f in fractions],
        "splits": splits,
        "counts": counts,
        "emt_lattice_constants": {m: emt_lattice_constant(m) for m in ds.config.metals},
        "adsorbate_file_md5": file_md5(ds.config.adsorbate_file),
        "units": {"energy": "eV", "forces": "eV/A", "positions": "A"},
        "keys": {
            "energy": "energy (SinglePointCalculator; extxyz info 'energy')",
            "forces": "forces on all atoms, fixed ones included (extxyz array 'forces')",
            "fixed": "FixAtoms (extxyz 'move_mask' False)",
            "tags": "0 fixed subsurface, 1 free surface, 2 adsorbate",
            "is2re": "info energy_relaxed, arrays pos_relaxed on the initial frame",
        },
        "systems": [
            {
                "system_id": s.system_id,
                "facet": s.facet,
                "bulk": s.bulk,
                "adsorbate": s.adsorbate,
                "adsorbate_smiles": s.adsorbate_smiles,
                "site": s.site,
                "n_atoms": len(s.frames[0]),
                "n_relax_frames": s.n_relax_frames,
                "n_frames": len(s.frames),
                "converged": s.converged,
                "energy_relaxed": s.energy_relaxed,
            }
            for s in ds.systems
        ],
        "versions": {"ase": ase.__version__, "numpy": np.__version__},
        "files": sorted(f"{label}.extxyz" for label in written),
    }
    path = out / "metadata.json"
    with atomic_write_path(path) as tmp:
        tmp.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    written["metadata"] = path
    return written


def file_md5(path: str) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()
