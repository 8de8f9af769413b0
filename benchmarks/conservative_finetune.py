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
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from eqv2.data.generate import generate_dataset
from eqv2.data.targets import fit_element_references, fit_normalizers
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.train.finetune import conservative_updates, transfer_weights
from eqv2.train.trainer import Trainer, TrainerConfig

MODEL = dict(
    num_layers=2, sphere_channels=16, attn_hidden_channels=16, num_heads=2,
    attn_alpha_channels=8, attn_value_channels=8, ffn_hidden_channels=32, edge_channels=16,
    lmax_list=[2], mmax_list=[1], grid_resolution=8, max_radius=5.0, max_neighbors=16,
    norm_type="layer_norm_sh", use_grid_mlp=True, alpha_drop=0.0, drop_path_rate=0.0,
    weight_init="uniform",
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
    args = ap.parse_args()
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

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
