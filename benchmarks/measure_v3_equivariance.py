#!/usr/bin/env python
"""Rotation-equivariance error of the EquiformerV3 options (random weights, fixture size).

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/measure_v3_equivariance.py --rotations 5
    .venv/bin/python benchmarks/measure_v3_equivariance.py --activations-only

**Activations** (``--activations-only``, seconds): the SwiGLU-S² and separable S2 activations
alone on node features (lmax 2 and 4, 8 channels, float64, random features and scalars) at
several grid sizes; max |act(D(R)x) − D(R)act(x)| / max |act(x)| over 5 random rotations.

**Models** (default, minutes):
the method of ``benchmarks/measure_equivariance.py`` section 2 (whose helpers it uses): the 4
fixture structures of ``shared/reference/eqv2_small`` in one float64 batch, random weights
(seed 0, the fixture's size: 2 blocks, 32 channels, lmax 4, mmax 2, 18×18 grid, separable S2 +
grid MLP, ``layer_norm_sh``), positions and cell rotated by random rotations; max |dE| and max
|dF| (per component) over rotations and structures, and dF relative to max |F|. One option
changed per row, then all of them together.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from tests.model.reference_cases import atoms_of, fixture_config  # noqa: E402
from tests.nn.symmetry import features, random_rotation, rotate  # noqa: E402

from eqv2.model import EquiformerV2, EquiformerV2Config  # noqa: E402
from eqv2.nn.activations import make_activation  # noqa: E402
from eqv2.so3 import CoefficientLayout  # noqa: E402
from measure_equivariance import (  # noqa: E402
    FIXTURE,
    eqv2_predictor,
    errors,
    fmt,
    predict,
    random_rotations,
)

SWIGLU = dict(attn_activation="swiglu_s2", ffn_activation="swiglu_grid_mlp")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rotations", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
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
    rots = random_rotations(args.rotations, args.seed + 1)
    report = {}
    print("| variant | max dE | max dF | max abs F | max dF / max abs F |")
    print("|---|---|---|---|---|")
    for name, overrides in VARIANTS.items():
        torch.manual_seed(0)
        model = EquiformerV2(EquiformerV2Config(**{**base, **overrides})).to(torch.float64).eval()
        de, df = errors(eqv2_predictor(model), structures, rots)
        fmax = np.abs(predict(model, structures)[1]).max()
        print(f"| {name} | {fmt(de.max())} | {fmt(df.max())} | {fmt(fmax)} | "
              f"{fmt(df.max() / fmax)} |", flush=True)  # fmt: skip
        report[name] = {"dE": float(de.max()), "dF": float(df.max()), "max_abs_F": float(fmax)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
