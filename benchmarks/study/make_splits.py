"""Write seeded train/validation/test splits of a shared real dataset into a run directory.

The small-data study (docs/small_data_study.md) trains eqv2 and MACE on the same splits. The
splits are written as extxyz files (energy, forces and, where present, stress as ASE's
SinglePointCalculator results, which both `eqv2 train` and benchmarks/mace/train_mace.py read)
into a directory outside the repository, with `indices.json` giving the original frame numbers:
some of the shared data carry no licence (oc_samples/SOURCE.md), so nothing is republished
here; the seed alone regenerates the same split.

    python benchmarks/study/make_splits.py 3bpa   --data ../shared/data --out runs/splits/3bpa
    python benchmarks/study/make_splits.py oxides --data ../shared/data --out runs/splits/oxides
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.io import read, write


@dataclass(frozen=True)
class DatasetSpec:
    """A shared dataset: its files (relative to the data root) and the split fractions."""

    files: tuple[str, ...]
    val_fraction: float
    test_fraction: float


DATASETS: dict[str, DatasetSpec] = {
    # 500 wB97X frames of one 27-atom molecule at 300 K (MIT).
    "3bpa": DatasetSpec(("molecules/3bpa_train_300K.xyz",), 0.1, 0.2),
    # 452 PBE frames of 10 oxide-slab relaxations, 48-98 atoms (no licence: never republish).
    "oxides": DatasetSpec(("oc_samples/oc22like_oxides_vasp_pbe.extxyz",), 0.1, 0.2),
    # 56 PBE bulk cells (31 Cu + 25 Si) with stress (BSD-3-Clause).
    "mlearn": DatasetSpec(
        ("bulk_stress/mlearn_Cu_test.extxyz", "bulk_stress/mlearn_Si_test.extxyz"), 0.15, 0.25
    ),
}


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """A seeded random partition of range(n) into train/val/test (each non-empty)."""
    if n < 3:
        raise ValueError(
            f"a dataset of {n} structures cannot be split three ways; it needs at least 3"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * val_fraction))
    n_test = max(1, round(n * test_fraction))
    return {
        "val": sorted(order[:n_val].tolist()),
        "test": sorted(order[n_val : n_val + n_test].tolist()),
        "train": sorted(order[n_val + n_test :].tolist()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="root of the shared data"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for train/val/test.extxyz"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    spec = DATASETS[args.dataset]
    frames = []
    sources = []
    for rel in spec.files:
        path = args.data / rel
        if not path.is_file():
            raise SystemExit(
                f"{path}: not found; pass --data pointing at the shared data root (holding {rel})"
            )
        part = read(path, ":")
        frames += part
        sources += [(rel, i) for i in range(len(part))]
    splits = split_indices(len(frames), spec.val_fraction, spec.test_fraction, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, idx in splits.items():
        tmp = args.out / f".{name}.extxyz.tmp"
        write(tmp, [frames[i] for i in idx], format="extxyz")
        tmp.replace(args.out / f"{name}.extxyz")
    record = {
        "dataset": args.dataset,
        "seed": args.seed,
        "files": list(spec.files),
        "splits": {name: [list(sources[i]) for i in idx] for name, idx in splits.items()},
    }
    (args.out / "indices.json").write_text(json.dumps(record, indent=1))
    print(args.dataset, {name: len(idx) for name, idx in splits.items()}, "->", args.out)


if __name__ == "__main__":
    main()
