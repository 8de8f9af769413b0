#!/usr/bin/env python
"""Measure EquiformerV2's rotation-equivariance error (the S2-grid aliasing) per option.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/measure_equivariance.py                    # all sections
    .venv/bin/python benchmarks/measure_equivariance.py --rotations 10 --no-reference
    .venv/bin/python benchmarks/measure_equivariance.py --json /tmp/equivariance.json

For every model the script runs the 4 fixture structures of ``shared/reference/eqv2_small``
(Cu(111)+OH slab, Cu fcc bulk, ethanol, triclinic NaCl) in one float64 batch, then the same
structures with positions and cell rotated by ``--rotations`` random rotations (uniform on SO(3),
seeded), and reports max |dE| (eV-like model units) and max |dF| (per component) between the
rotated outputs and the rotated original outputs, over all rotations and structures. eqv2 uses
its deterministic edge frames (``frame_roll="deterministic"``).

Sections:

1. ``fixture``: the fixture's weights (fairchem init, perturbed), per structure, next to the
   reference's own figures from ``seed_spread.json`` (one rotation per structure) and, when a
   reference interpreter is given (``--reference-python`` or ``$EQV2_REFERENCE_PYTHON``, the
   python of a fairchem-core 1.10 environment; without either it is skipped, saying so), the
   reference (fairchem 1.10) measured here on the same rotations with the same weights. For that
   comparison both get the rotated cell rounded to float32 (fairchem's cell is float32), and
   the reference draws its random edge-frame roll (seeded per structure).
2. ``variants``: random weights (seeded fairchem-style init, the fixture's size: 2 blocks, 32
   channels, lmax 4, mmax 2, 18×18 grid) for each norm type and each activation.
3. ``grid``: the fixture's weights and the plain-S2 variant at grid_resolution 12, 18, 24, 32
   (the grid matrices are buffers, not parameters, so the same weights run at any resolution).

Runtime: a few minutes on 2 CPU threads (``--threads``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # for tests.model.reference_cases

from tests.model.reference_cases import atoms_of, fixture_config, fixture_model  # noqa: E402

from eqv2.graph import batch_structures  # noqa: E402
from eqv2.model import EquiformerV2, EquiformerV2Config  # noqa: E402

FIXTURE = REPO.parent / "shared" / "reference" / "eqv2_small"
REFERENCE_TOOLS = REPO.parent / "shared" / "reference" / "tools"
DEFAULT_REFERENCE_PYTHON = os.environ.get("EQV2_REFERENCE_PYTHON") or None

VARIANTS = {
    # norm types, with the fixture's activations (separable S2 + grid MLP)
    "layer_norm": dict(norm_type="layer_norm"),
    "layer_norm_sh (fixture architecture)": dict(norm_type="layer_norm_sh"),
    "rms_norm_sh": dict(norm_type="rms_norm_sh"),
    # activations, with the fixture's norm (layer_norm_sh)
    "gate, no grid MLP": dict(use_gate_act=True, use_grid_mlp=False),
    "S2, no grid MLP": dict(use_sep_s2_act=False, use_grid_mlp=False),
    "separable S2, no grid MLP": dict(use_sep_s2_act=True, use_grid_mlp=False),
    "S2 + grid MLP (no scalar branch)": dict(use_sep_s2_act=False, use_grid_mlp=True),
}
# The options of issue 12 (smooth mode, EquiformerV3's norms, activations, grids and widths)
# are measured by measure_v3_equivariance.py, in float64 and float32 and with stress.
GRIDS = (12, 18, 24, 32)

# Runs inside the reference's interpreter: fairchem's model with the fixture weights on given
# structures (one at a time: fairchem refuses mixed pbc in a batch). Writes energies and forces.
REFERENCE_SNIPPET = r"""
import json, sys
import numpy as np, torch
from ase import Atoms
sys.path.insert(0, sys.argv[1])
import eqv2_ref_common as C
torch.set_num_threads(int(sys.argv[5]))
cfg = json.load(open(sys.argv[2]))["backbone_config"]
sd = torch.load(sys.argv[3], map_location="cpu", weights_only=True)
model = C.load_params(C.build_model(cfg, torch.float64), sd).eval()
rec = C.Recorder(model.backbone)
data = np.load(sys.argv[4])
energies, forces = [], []
for k in range(int(data["count"])):
    atoms = Atoms(numbers=data[f"n{k}"], positions=data[f"p{k}"], cell=data[f"c{k}"],
                  pbc=data[f"b{k}"])
    e, f = C.run_model(model, rec, C.make_batch([atoms], torch.float64), seed=k)
    energies.append(float(e[0])); forces.append(f.numpy().tolist())
json.dump({"energies": energies, "forces": forces}, open(sys.argv[6], "w"))
"""


def random_rotations(count: int, seed: int) -> np.ndarray:
    """``count`` rotations uniform on SO(3) (normalised Gaussian quaternions)."""
    q = np.random.default_rng(seed).normal(size=(count, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def rotated(atoms, R, float32_cell: bool = False):
    out = atoms.copy()
    out.positions = atoms.positions @ R.T
    cell = atoms.cell.array @ R.T
    if float32_cell:
        cell = cell.astype(np.float32).astype(np.float64)
    out.set_cell(cell)
    return out


def predict(model: EquiformerV2, structures) -> tuple[np.ndarray, np.ndarray]:
    c = model.config
    graph = batch_structures(
        structures, cutoff=c.max_radius, max_neighbors=c.max_neighbors, dtype=torch.float64
    )
    with torch.no_grad():
        out = model(graph)
    return out["energy"].numpy(), out["forces"].numpy()


def errors(predict_many, structures, rotations, float32_cell: bool = False):
    """Per structure: max over rotations of |dE| and of max |dF|.

    ``predict_many(list of structure lists)`` returns one (energies, forces) pair per list.
    """
    starts = np.cumsum([0] + [len(a) for a in structures])
    inputs = [structures] + [[rotated(a, R, float32_cell) for a in structures] for R in rotations]
    (e0, f0), *outputs = predict_many(inputs)
    de = np.zeros(len(structures))
    df = np.zeros(len(structures))
    for R, (e1, f1) in zip(rotations, outputs, strict=True):
        for i in range(len(structures)):
            s = slice(starts[i], starts[i + 1])
            de[i] = max(de[i], abs(e1[i] - e0[i]))
            df[i] = max(df[i], np.abs(f1[s] - f0[s] @ R.T).max())
    return de, df


def eqv2_predictor(model: EquiformerV2):
    return lambda inputs: [predict(model, structures) for structures in inputs]


def reference_predictor(python: str, threads: int):
    """predict_many running fairchem 1.10 (the reference) in its own interpreter, once."""

    def predict_many(inputs):
        flat = [a for structures in inputs for a in structures]
        with tempfile.TemporaryDirectory() as tmp:
            arrays = {"count": np.array(len(flat))}
            for k, a in enumerate(flat):
                arrays |= {
                    f"n{k}": a.numbers,
                    f"p{k}": a.positions,
                    f"c{k}": a.cell.array,
                    f"b{k}": a.pbc,
                }
            np.savez(Path(tmp) / "in.npz", **arrays)
            out = Path(tmp) / "out.json"
            subprocess.run(
                [
                    python,
                    "-c",
                    REFERENCE_SNIPPET,
                    str(REFERENCE_TOOLS),
                    str(FIXTURE / "config.json"),
                    str(FIXTURE / "state_dict.pt"),
                    str(Path(tmp) / "in.npz"),
                    str(threads),
                    str(out),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.read_text())
        results, k = [], 0
        for structures in inputs:
            n = len(structures)
            energies = np.array(result["energies"][k : k + n])
            forces = np.concatenate([np.array(f) for f in result["forces"][k : k + n]])
            results.append((energies, forces))
            k += n
        return results

    return predict_many


def with_grid(model: EquiformerV2, resolution: int) -> EquiformerV2:
    cfg = EquiformerV2Config(**{**model.config.to_dict(), "grid_resolution": resolution})
    other = EquiformerV2(cfg)
    other.load_state_dict(model.state_dict())
    return other.to(torch.float64).eval()


def fmt(x: float) -> str:
    return f"{x:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rotations", type=int, default=10, help="random rotations per model")
    ap.add_argument(
        "--reference-rotations",
        type=int,
        default=20,
        help="rotations for the side-by-side run of the reference (fixture weights)",
    )
    ap.add_argument(
        "--fixture-rotations", type=int, default=100, help="rotations for the fixture weights"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--reference-python",
        default=DEFAULT_REFERENCE_PYTHON,
        help="python of a fairchem-core 1.10 environment (default: $EQV2_REFERENCE_PYTHON); "
        "without either, the reference columns are skipped",
    )
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    ref = dict(np.load(FIXTURE / "reference.npz"))
    spread = json.loads((FIXTURE / "seed_spread.json").read_text())
    structures = [atoms_of(ref, i) for i in range(4)]
    names = [row["name"] for row in spread["structures"]]
    sd = torch.load(FIXTURE / "state_dict.pt", map_location="cpu", weights_only=True)
    fixed = fixture_model(FIXTURE, sd, torch.float64)
    cfg = fixture_config(FIXTURE)
    report: dict = {"rotations": args.rotations, "seed": args.seed, "threads": args.threads}

    # 1. fixture weights vs the reference ---------------------------------------------------
    rots = random_rotations(args.fixture_rotations, args.seed)
    de, df = errors(eqv2_predictor(fixed), structures, rots)
    rows = []
    use_ref = not args.no_reference and bool(args.reference_python)
    if use_ref and not Path(args.reference_python).exists():
        print(f"reference columns skipped: {args.reference_python} does not exist\n")
        use_ref = False
    elif not args.no_reference and not use_ref:
        print(
            "reference columns skipped: no reference interpreter (set EQV2_REFERENCE_PYTHON or "
            "pass --reference-python)\n"
        )
    ref_rots = rots[: args.reference_rotations]
    if use_ref:
        rde, rdf = errors(
            reference_predictor(args.reference_python, args.threads),
            structures,
            ref_rots,
            float32_cell=True,
        )
        ede, edf = errors(eqv2_predictor(fixed), structures, ref_rots, float32_cell=True)
    print(
        f"## Fixture weights, float64, {args.fixture_rotations} random rotations "
        f"(seed {args.seed})\n"
    )
    header = (
        "| structure | eqv2 max dE | eqv2 max dF | reference (seed_spread.json, 1 rot.) dE | dF |"
    )
    sep = "|---|---|---|---|---|"
    if use_ref:
        header += f" eqv2, {len(ref_rots)} rot. f32 cell dE | dF | reference, same rot. dE | dF |"
        sep += "---|---|---|---|"
    print(header)
    print(sep)
    for i, name in enumerate(names):
        s = spread["structures"][i]
        line = (
            f"| {name} | {fmt(de[i])} | {fmt(df[i])} | {fmt(s['rotation_equivariance_dE'])} "
            f"| {fmt(s['rotation_equivariance_dF'])} |"
        )
        row = {
            "name": name,
            "eqv2_dE": de[i],
            "eqv2_dF": df[i],
            "seed_spread_dE": s["rotation_equivariance_dE"],
            "seed_spread_dF": s["rotation_equivariance_dF"],
        }
        if use_ref:
            line += f" {fmt(ede[i])} | {fmt(edf[i])} | {fmt(rde[i])} | {fmt(rdf[i])} |"
            row |= {
                "eqv2_f32cell_dE": ede[i],
                "eqv2_f32cell_dF": edf[i],
                "reference_dE": rde[i],
                "reference_dF": rdf[i],
            }
        print(line)
        rows.append(row)
    worst = spread["max_over_structures"]
    line = (
        f"| **max** | {fmt(de.max())} | {fmt(df.max())} | "
        f"{fmt(worst['rotation_equivariance_dE'])} | {fmt(worst['rotation_equivariance_dF'])} |"
    )
    if use_ref:
        line += f" {fmt(ede.max())} | {fmt(edf.max())} | {fmt(rde.max())} | {fmt(rdf.max())} |"
    print(line + "\n")
    report["fixture"] = rows
    print(f"({time.time() - start:.0f} s)\n", file=sys.stderr)

    # 2. random weights per variant -----------------------------------------------------------
    rots = random_rotations(args.rotations, args.seed + 1)
    print(f"## Random weights (fixture size, seed 0), {args.rotations} random rotations\n")
    print("| variant | max dE | max dF | max abs F | max dF / max abs F |")
    print("|---|---|---|---|---|")
    report["variants"] = {}
    for name, overrides in VARIANTS.items():
        torch.manual_seed(0)
        model = EquiformerV2(EquiformerV2Config(**{**cfg.to_dict(), **overrides}))
        model = model.to(torch.float64).eval()
        de, df = errors(eqv2_predictor(model), structures, rots)
        fmax = np.abs(predict(model, structures)[1]).max()
        print(
            f"| {name} | {fmt(de.max())} | {fmt(df.max())} | {fmt(fmax)} | {fmt(df.max() / fmax)} |"
        )
        report["variants"][name] = {"dE": de.max(), "dF": df.max(), "max_abs_F": fmax}
    print()
    print(f"({time.time() - start:.0f} s)\n", file=sys.stderr)

    # 3. grid resolution ---------------------------------------------------------------------
    torch.manual_seed(0)
    s2 = EquiformerV2(EquiformerV2Config(**{**cfg.to_dict(), **VARIANTS["S2, no grid MLP"]})).to(
        torch.float64
    )
    print(f"## Grid resolution (lmax 4, mmax 2), {args.rotations} random rotations\n")
    print("| grid | fixture weights dE | dF | random S2 variant dE | dF |")
    print("|---|---|---|---|---|")
    report["grid"] = {}
    for res in GRIDS:
        a = errors(eqv2_predictor(with_grid(fixed, res)), structures, rots)
        b = errors(eqv2_predictor(with_grid(s2, res)), structures, rots)
        print(
            f"| {res}×{res} | {fmt(a[0].max())} | {fmt(a[1].max())} | {fmt(b[0].max())} "
            f"| {fmt(b[1].max())} |"
        )
        report["grid"][res] = {
            "fixture_dE": a[0].max(),
            "fixture_dF": a[1].max(),
            "s2_dE": b[0].max(),
            "s2_dF": b[1].max(),
        }
    print(f"\n({time.time() - start:.0f} s in all)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
