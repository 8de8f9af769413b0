"""``eqv2 demo``: predict energies and forces of real OC20/OC22 samples with a fresh model.

Until training lands this is the main job: it exercises the whole inference path (readers,
periodic graphs, the model, batching) on the structures in ``../shared/data/oc_samples`` and
prints a table. The model is randomly initialised, so the numbers show the pipeline works and
how fast it is, not chemistry.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "oc_samples"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="predict OC20/OC22 samples with a randomly initialised model")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of .extxyz files")
    p.add_argument("--max-structures", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ase.io import read

    from eqv2.model import EquiformerV2, EquiformerV2Config, Potential

    files = sorted(Path(args.data).glob("*.extxyz"))
    if not files:
        raise FileNotFoundError(
            f"no .extxyz files in {args.data}; pass --data FOLDER with structures to predict"
        )
    structures = []
    for path in files:
        frames = read(path, ":")
        step = max(1, len(frames) // 4)
        for k, atoms in enumerate(frames[::step][:4]):
            atoms.info.setdefault("name", f"{path.stem}[{k * step}]")
            structures.append(atoms)
    structures = structures[: args.max_structures]

    torch.manual_seed(args.seed)
    config = EquiformerV2Config(
        num_layers=2,
        sphere_channels=32,
        attn_hidden_channels=32,
        num_heads=2,
        attn_alpha_channels=16,
        attn_value_channels=8,
        ffn_hidden_channels=64,
        lmax_list=[4],
        mmax_list=[2],
        grid_resolution=18,
        max_neighbors=20,
        max_radius=6.0,
        edge_channels=32,
        norm_type="layer_norm_sh",
        use_grid_mlp=True,
        alpha_drop=0.0,
        drop_path_rate=0.0,
    )
    potential = Potential(EquiformerV2(config))
    print(
        f"EquiformerV2 (random weights): {potential.model.num_params:,} parameters, "
        f"lmax={config.lmax}, mmax={config.mmax}, {config.num_layers} layers"
    )
    start = time.perf_counter()
    results = potential.predict(structures, batch_size=4)
    elapsed = time.perf_counter() - start
    header = f"{'structure':<44} {'atoms':>5} {'pbc':>5} {'E_model (eV)':>13} {'max|F| (eV/Å)':>14}"
    print(header)
    print("-" * len(header))
    for atoms, res in zip(structures, results, strict=True):
        pbc = "".join("T" if p else "F" for p in atoms.pbc)
        fmax = float((res["forces"] ** 2).sum(1).max() ** 0.5)
        print(
            f"{atoms.info['name'][:44]:<44} {len(atoms):>5} {pbc:>5} "
            f"{res['energy']:>13.5f} {fmax:>14.5f}"
        )
    natoms = sum(len(a) for a in structures)
    print(
        f"\n{len(structures)} structures, {natoms} atoms in {elapsed:.2f} s "
        f"({natoms / elapsed:.0f} atoms/s on {torch.get_num_threads()} threads)"
    )
    return 0
