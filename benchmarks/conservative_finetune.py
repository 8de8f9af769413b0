#!/usr/bin/env python
"""Direct → conservative fine-tuning against conservative training from scratch, same budget.

Usage (from the repository root, with the project's virtual environment):

    .venv/bin/python benchmarks/conservative_finetune.py --out runs/conservative --steps 400

1. **Data**: EMT-labelled slab(+adsorbate) frames from ``eqv2.data.generate`` (seeded), split
   80/20 into train / val.
2. **Schedule** (the eSEN / EquiformerV3 recipe, ``docs/equiformer_v3.md``): ``--steps`` in
   total. (a) a direct-force model trained ``(1 - f)·steps`` at ``--lr``; (b) its force head
   dropped, then fine-tuned with forces = −dE/dx for ``f·steps`` at ``lr · --ft-lr-ratio``
   (``f = --conservative-fraction``); (c) the same architecture trained conservative from
   scratch for all ``steps`` at ``--lr``.
3. **Report**: validation energy / force MAE of (a) with its direct head, (a)'s −dE/dx before
   any conservative step, (b) and (c), and the CPU time (``time.process_time``) of each phase;
   ``OUT/summary.json`` keeps every number.
4. **Conservation checks**: how far (a)'s direct head is from a gradient, mean and max
   |F_head + dE/dx| on the validation frames (0 by construction for (b) and (c)); and NVE
   (velocity Verlet, ``--nve-fs`` femtoseconds from 300 K at each of ``--nve-timesteps``,
   float64) of the first validation structure with (a), (b) and (c): energy drift
   (meV/atom/ps) and max |E(t) − E(0)|. A conservative model's max |E(t) − E(0)| falls as
   dt² (integration error); a direct model's does not. ``--checks-only`` reruns the checks on
   the models a previous run saved in ``OUT`` (``OUT/{direct,finetune,scratch}/checkpoint.pt``).

The model is tiny (2 blocks, 16 channels, lmax 2) and in the smooth mode (polynomial
envelope, every neighbour within 5 Å: ``docs/smooth.md``), so that a conservative model's NVE
energy is conserved and the drift check separates the head from the graph; ``--cap N`` runs
today's capped graph (``max_neighbors: N``, no envelope) instead.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

import eqv2
from eqv2.data.generate import generate_dataset
from eqv2.data.targets import fit_element_references, fit_normalizers
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.simulate import EqV2Calculator
from eqv2.simulate.md import run_md
from eqv2.train.finetune import conservative_updates, transfer_weights
from eqv2.train.trainer import Trainer, TrainerConfig

MODEL = dict(
    num_layers=2, sphere_channels=16, attn_hidden_channels=16, num_heads=2,
    attn_alpha_channels=8, attn_value_channels=8, ffn_hidden_channels=32, edge_channels=16,
    lmax_list=[2], mmax_list=[1], grid_resolution=8, max_radius=5.0, max_neighbors=None,
    envelope={"type": "polynomial", "p": 5}, norm_type="layer_norm_sh", use_grid_mlp=True,
    alpha_drop=0.0, drop_path_rate=0.0, weight_init="uniform",
)  # fmt: skip


def _train(potential, train, val, out, steps, lr, seed):
    config = TrainerConfig(
        max_steps=steps, lr=lr, warmup_steps=max(1, steps // 10), weight_decay=1e-3,
        max_atoms_per_batch=160, energy_coefficient=4.0, force_coefficient=20.0,
        energy_loss="mae", ema_decay=None, eval_every=10**9, checkpoint_every=10**9, seed=seed,
        device="cpu", tensorboard=False,
    )  # fmt: skip
    trainer = Trainer(potential, train, out, config)
    start = time.process_time()
    trainer.fit()
    cpu = time.process_time() - start
    return trainer.validate(val), cpu


def _metrics(metrics: dict, cpu: float | None) -> dict:
    keys = ("energy_mae", "force_mae", "force_cos")
    return {**{k: float(metrics[k]) for k in keys}, "cpu_s": cpu}


def _head_vs_gradient(direct: Potential, gradient: Potential, frames) -> dict:
    """|F_head − (−dE/dx)| of the direct model over the free atoms of ``frames`` (eV/Å)."""
    diffs = []
    for atoms in frames:
        head, grad = direct.predict(atoms)["forces"], gradient.predict(atoms)["forces"]
        free = np.ones(len(atoms), bool)
        for c in atoms.constraints:
            free[c.get_indices()] = False
        diffs.append(np.abs(head - grad)[free])
    d = np.concatenate(diffs)
    return {"mean_abs_F_plus_dEdx": float(d.mean()), "max_abs_F_plus_dEdx": float(d.max())}


def _nve(potential: Potential, atoms, time_fs: float, timesteps: list[float]) -> dict:
    """Drift of float64 NVE runs (300 K, ``time_fs`` long) per time step with ``potential``."""
    calc = EqV2Calculator(copy.deepcopy(potential).to(torch.float64).eval())
    out = {}
    for dt in timesteps:
        steps = round(time_fs / dt)
        result = run_md(atoms, calc, ensemble="nve", timestep_fs=dt, steps=steps,
                        temperature_K=300.0, interval=steps, seed=0)  # fmt: skip
        keys = ("drift_meV_per_atom_per_ps", "max_abs_dE_meV_per_atom")
        out[f"dt={dt:g}fs"] = {
            **{k: result.drift[k] for k in keys},
            "max_temperature_K": float(result.temperature_K.max()),
        }
    return out


def _checks(direct, finetuned, scratch, conservative_config, potential, val, args) -> dict:
    """|F_head + dE/dx| of the direct model and the NVE runs of the three models."""
    gradient_of_a = potential(conservative_config)
    transfer_weights(direct.model, gradient_of_a.model)
    report = {"a_head_vs_gradient": _head_vs_gradient(direct, gradient_of_a, val)}
    if args.nve_fs:
        nve = {"structure": val[0].get_chemical_formula(), "time_fs": args.nve_fs}
        for key, model in (("a", direct), ("b", finetuned), ("c", scratch)):
            nve[key] = _nve(model, val[0], args.nve_fs, args.nve_timesteps)
        report["nve"] = nve
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--systems", type=int, default=12)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--conservative-fraction", type=float, default=0.25)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--ft-lr-ratio", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nve-fs", type=float, default=300.0, help="NVE length; 0: no NVE")
    ap.add_argument("--nve-timesteps", type=float, nargs="+", default=[1.0])
    ap.add_argument("--checks-only", action="store_true", help="reuse the models in OUT")
    ap.add_argument("--cap", type=int, help="max_neighbors, no envelope (default: smooth mode)")
    args = ap.parse_args()
    if args.cap is not None:
        MODEL.update(max_neighbors=args.cap, envelope=None)
    torch.set_num_threads(args.threads)
    frames = generate_dataset(
        args.systems, seed=args.seed, relax_steps=4, rattle_frames=2, sizes=((2, 2),), layers=(3,)
    ).s2ef_frames
    cut = int(0.8 * len(frames))
    train, val = frames[:cut], frames[cut:]
    numbers = [a.numbers for a in train]
    energies = [a.get_potential_energy() for a in train]
    refs = fit_element_references(numbers, energies)
    forces = [a.get_forces(apply_constraint=False) for a in train]
    normalizers = fit_normalizers(energies, forces, numbers, refs)

    def potential(config: EquiformerV2Config) -> Potential:
        torch.manual_seed(args.seed)
        return Potential(EquiformerV2(config), normalizers, torch.as_tensor(refs))

    direct_steps = round((1 - args.conservative_fraction) * args.steps)
    ft_steps = args.steps - direct_steps
    direct_config = EquiformerV2Config(**MODEL)
    conservative_config = EquiformerV2Config(**{**MODEL, **conservative_updates(direct_config)})
    report: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "frames": {"train": len(train), "val": len(val)},
        "steps": {"direct": direct_steps, "conservative_finetune": ft_steps},
    }

    if args.checks_only:
        direct, finetuned, scratch = (
            eqv2.load_model(args.out / phase / "checkpoint.pt")
            for phase in ("direct", "finetune", "scratch")
        )
        report = {"args": report["args"], **_checks(direct, finetuned, scratch,
                  conservative_config, potential, val, args)}  # fmt: skip
        (args.out / "checks.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return

    direct = potential(direct_config)
    metrics, cpu = _train(direct, train, val, args.out / "direct", direct_steps, args.lr, 0)
    report["a_direct_head"] = _metrics(metrics, cpu)

    finetuned = potential(conservative_config)
    transfer_weights(direct.model, finetuned.model)
    probe = Trainer(finetuned, train, args.out / "probe", TrainerConfig(device="cpu"))
    report["a_minus_grad_before_finetune"] = _metrics(probe.validate(val), None)
    metrics, cpu = _train(finetuned, train, val, args.out / "finetune", ft_steps,
                          args.lr * args.ft_lr_ratio, 1)  # fmt: skip
    report["b_conservative_finetuned"] = _metrics(metrics, cpu)

    scratch = potential(conservative_config)
    metrics, cpu = _train(scratch, train, val, args.out / "scratch", args.steps, args.lr, 0)
    report["c_conservative_scratch"] = _metrics(metrics, cpu)
    report |= _checks(direct, finetuned, scratch, conservative_config, potential, val, args)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
