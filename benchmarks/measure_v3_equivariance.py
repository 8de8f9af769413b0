#!/usr/bin/env python
"""Rotation-equivariance error of the options added for issue 12 (EquiformerV3, smooth mode).

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/measure_v3_equivariance.py --rotations 5
    .venv/bin/python benchmarks/measure_v3_equivariance.py --activations-only
    .venv/bin/python benchmarks/measure_v3_equivariance.py --only smooth --dtypes float64

**Activations** (``--activations-only``, seconds): the SwiGLU-S² and separable S2 activations
alone on node features (lmax 2 and 4, 8 channels, float64, random features and scalars) at
several grid sizes; max |act(D(R)x) − D(R)act(x)| / max |act(x)| over 5 random rotations.

**Models** (default, minutes): the 4 fixture structures of ``shared/reference/eqv2_small``
(Cu(111)+OH slab, Cu fcc bulk, ethanol, triclinic NaCl) in one batch, positions and cell
rotated by random rotations uniform on SO(3) (seeded). Random weights (seed 0) of the fixture's
size (2 blocks, 32 channels, lmax 4, mmax 2, 18×18 grid, separable S2 + grid MLP,
``layer_norm_sh``, cap 20) with one option changed per row; then every V3 option together, and
``configs/v3/small.yaml``'s model as it is and in the smooth mode. Each row in float64 and in
float32 (the same weights cast; the rotated structures are built in float64), through
`eqv2.model.Potential` (forces from the direct head, or −dE/dx for ``direct_forces: false``
rows; stress always the strain derivative of the energy). Reported: max |dE| over rotations and
structures, max |dF| per component and relative to max |F|, max |dS| per component over the
three periodic structures (|S(R·x) − R·S(x)·Rᵀ|) and relative to max |S|.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from tests.model.reference_cases import atoms_of, fixture_config  # noqa: E402
from tests.nn.symmetry import features, random_rotation, rotate  # noqa: E402

from eqv2.model import EquiformerV2, EquiformerV2Config, Potential  # noqa: E402
from eqv2.nn.activations import make_activation  # noqa: E402
from eqv2.so3 import CoefficientLayout  # noqa: E402
from measure_equivariance import FIXTURE, fmt, random_rotations, rotated  # noqa: E402

SWIGLU = dict(attn_activation="swiglu_s2", ffn_activation="swiglu_grid_mlp")
SMOOTH = dict(envelope={"type": "polynomial", "p": 5}, max_neighbors=None)
GATE = dict(use_gate_act=True, use_grid_mlp=False)
#: the model of configs/v3/small.yaml (conservative, lmax 3, cap 20), as it is and smooth
V3_SMALL = yaml.safe_load((HERE.parent / "configs/v3/small.yaml").read_text())["model"]
V3_SMALL_ROWS = {
    "configs/v3/small.yaml (conservative)": V3_SMALL,
    "configs/v3/small.yaml + smooth (envelope, no cap)": {**V3_SMALL, **SMOOTH},
}
#: EquiformerV3's grids for lmax 4, mmax 2 (its OMat24 configs)
V3_GRIDS = dict(attn_grid_resolution=[14, 8], ffn_grid_resolution=[14, 14])
VARIANTS = {
    "fixture architecture (layer_norm_sh, separable S2 + grid MLP)": {},
    "norm_type=merge_layer_norm (= rms_norm_sh)": dict(norm_type="merge_layer_norm"),
    "norm_type=merge_rms_norm": dict(norm_type="merge_rms_norm"),
    "attn_activation=swiglu_s2 (18x18)": dict(attn_activation="swiglu_s2"),
    "ffn_activation=swiglu_grid_mlp (18x18)": dict(ffn_activation="swiglu_grid_mlp"),
    "ffn_activation=swiglu_s2, no grid MLP (18x18)": dict(
        ffn_activation="swiglu_s2", use_grid_mlp=False
    ),
    "SwiGLU-S2 both (18x18)": SWIGLU,
    "SwiGLU-S2 both, V3 grids attn [14,8] ffn [14,14]": {**SWIGLU, **V3_GRIDS},
    "ffn_width_multiplier=4": dict(ffn_width_multiplier=4),
    "all V3 options (merge_layer_norm, SwiGLU-S2, V3 grids, width 4)": dict(
        norm_type="merge_layer_norm", ffn_width_multiplier=4, **SWIGLU, **V3_GRIDS
    ),
    "attn/ffn grids [14,8]/[14,14], separable S2 + grid MLP": dict(V3_GRIDS),
    "smooth: envelope p=5, no cap": dict(SMOOTH),
    "smooth: envelope p=5, no cap, conservative (-dE/dx)": dict(SMOOTH, direct_forces=False),
    "gate, no grid MLP, conservative, cap 20": dict(GATE, direct_forces=False),
    "gate, no grid MLP, conservative, smooth": dict(GATE, direct_forces=False, **SMOOTH),
}


def activation_errors(rotations: int = 5) -> dict[str, float]:
    """Relative equivariance error of single activations per (lmax, name, grid)."""
    out = {}
    print("| lmax | activation | grid | max relative error |")
    print("|---|---|---|---|")
    for lmax in (2, 4):
        layout = CoefficientLayout(lmax)
        for name in ("swiglu_s2", "separable_s2"):
            act = make_activation(name, layout.degree_index())
            x = features(5, lmax, act.expansion * 8, seed=2)
            scalars = torch.randn(5, act.num_scalars(8), dtype=torch.float64)
            for res in sorted({2 * (lmax + 1), 3 * lmax + 2, 18, 6 * lmax + 4}):
                grid = layout.node_grid(res, torch.float64)
                ref = act(scalars, x, grid)
                err = max(
                    float((act(scalars, rotate(x, R), grid) - rotate(ref, R)).abs().max())
                    for R in (random_rotation(seed) for seed in range(rotations))
                ) / float(ref.abs().max())
                print(f"| {lmax} | {name} | {res}x{res} | {err:.1e} |", flush=True)
                out[f"lmax{lmax} {name} {res}x{res}"] = err
    return out


def outputs(potential: Potential, structures) -> dict[str, np.ndarray]:
    """Energy, forces and (strain-derivative) stress of ``structures`` in one batch."""
    return potential.compute(potential.build_graph(structures), stress=True)


def model_errors(potential: Potential, structures, rotations) -> dict[str, float]:
    """Max rotation errors of energy, forces and stress (periodic structures) and the scales."""
    periodic = np.array([a.pbc.any() for a in structures])
    ref = outputs(potential, structures)
    de = df = ds = 0.0
    for R in rotations:
        out = outputs(potential, [rotated(a, R) for a in structures])
        de = max(de, float(np.abs(out["energy"] - ref["energy"]).max()))
        df = max(df, float(np.abs(out["forces"] - ref["forces"] @ R.T).max()))
        turned = np.einsum("ij,bjk,lk->bil", R, ref["stress"], R)
        ds = max(ds, float(np.abs(out["stress"] - turned)[periodic].max()))
    return {
        "dE": de,
        "dF": df,
        "max_abs_F": float(np.abs(ref["forces"]).max()),
        "dS": ds,
        "max_abs_S": float(np.abs(ref["stress"][periodic]).max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rotations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--only", nargs="+", help="rows whose name contains one of these texts")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--activations-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.activations_only:
        report = activation_errors()
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return
    ref = dict(np.load(FIXTURE / "reference.npz"))
    structures = [atoms_of(ref, i) for i in range(4)]
    base = fixture_config(FIXTURE).to_dict()
    rows = {name: {**base, **overrides} for name, overrides in VARIANTS.items()}
    rows |= V3_SMALL_ROWS
    if args.only:
        rows = {k: v for k, v in rows.items() if any(text in k for text in args.only)}
    rots = random_rotations(args.rotations, args.seed + 1)
    report = {}
    start = time.process_time()
    print(f"{args.rotations} random rotations; dS over the 3 periodic structures\n")
    print("| variant | dtype | max dE | max dF | dF / max abs F | max dS | dS / max abs S |")
    print("|---|---|---|---|---|---|---|")
    for name, config in rows.items():
        torch.manual_seed(0)
        model = EquiformerV2(EquiformerV2Config(**config)).eval()
        for dtype in args.dtypes:
            potential = Potential(copy.deepcopy(model).to(getattr(torch, dtype))).eval()
            e = model_errors(potential, structures, rots)
            print(f"| {name} | {dtype} | {fmt(e['dE'])} | {fmt(e['dF'])} | "
                  f"{fmt(e['dF'] / e['max_abs_F'])} | {fmt(e['dS'])} | "
                  f"{fmt(e['dS'] / e['max_abs_S'])} |", flush=True)  # fmt: skip
            report[f"{name} [{dtype}]"] = e
    print(f"\n({time.process_time() - start:.0f} CPU s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
