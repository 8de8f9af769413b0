"""Train MACE (mace-torch) on extxyz splits under a CPU-time budget, for the small-data study.

Run it with the separate MACE environment that `benchmarks/mace/setup.sh` creates (MACE is
not a dependency of eqv2):

    VENV_DIR/bin/python benchmarks/mace/train_mace.py --train train.extxyz \
        --val val.extxyz --test test.extxyz --out runs/mace_3bpa --budget-cpu-s 1800

Why an own loop: MACE's `run_train` stops after a number of epochs, not after a time. This
script builds the same model `mace_run_train` builds (ScaleShiftMACE with residual interaction
blocks, E0s fitted by least squares on the training set, mean/RMS-force scaling, average
number of neighbours from the training graphs) and trains it with MACE's own loss
(`WeightedEnergyForcesLoss`: per-atom energy MSE + force MSE, weights 1 and 100 as MACE's
defaults), Adam with AMSGrad, weight decay 5e-7 and an EMA of the weights (0.99), as
`mace_run_train` does by default. It runs on one thread and stops when the process's CPU
time (`time.process_time()`, set-up included) reaches the budget; the learning rate follows a
cosine over that budget (`--schedule cosine`, to 1 % of `--lr`; MACE's own plateau schedule
never reduces in so few epochs) or stays constant (`--schedule constant`). Every
`--eval-every-cpu-s` it evaluates the validation split with the EMA weights and appends a row
to `curve.csv` (CPU s, epoch, step, lr, val energy/force MAE); the evaluation's CPU time
counts against the budget, as eqv2's validation does. At the end it scores the test split
and writes `metrics.json` with the model-free baselines (zero forces; training-mean and
element-reference energies) that `eqv2 train` reports. Metrics are those of eqv2: energy MAE
in eV per structure, force MAE per component in eV/Å.

The model's dtype is float32 (`--dtype`), as eqv2 trains; `mace_run_train` defaults to
float64 (not timed in the study).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

# e3nn 0.4.4 (pinned by mace-torch) loads its own constants file, which holds `slice` objects,
# with torch.load's default weights_only=True (torch >= 2.6): allow just that type.
torch.serialization.add_safe_globals([slice])

from e3nn import o3  # noqa: E402
from mace.tools import torch_geometric  # noqa: E402
from mace.tools.utils import AtomicNumberTable  # noqa: E402

from mace import data, modules, tools  # noqa: E402

KEYS = data.KeySpecification(
    info_keys={"energy": "REF_energy"}, arrays_keys={"forces": "REF_forces"}
)


def read_configs(path: Path) -> list:
    """MACE configurations of an extxyz file whose frames carry energy and forces."""
    frames = ase.io.read(path, ":")
    for i, atoms in enumerate(frames):
        if atoms.calc is None:
            raise SystemExit(
                f"{path}: structure {i} has no energy/forces; write them as extxyz energy/forces"
            )
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
    return data.config_from_atoms_list(frames, key_specification=KEYS)


def loader(configs: list, z_table: AtomicNumberTable, r_max: float, batch_size: int, shuffle: bool):
    graphs = [
        data.AtomicData.from_config(c, z_table=z_table, cutoff=r_max, heads=["Default"])
        for c in configs
    ]
    return torch_geometric.dataloader.DataLoader(
        graphs, batch_size=batch_size, shuffle=shuffle, drop_last=False
    )


def score(model: torch.nn.Module, batches) -> dict[str, float]:
    """Energy MAE (eV/structure), per-atom energy MAE (eV/atom), force MAE (eV/Å) of a split."""
    e_abs, e_atom_abs, f_abs, n_struct, n_comp = 0.0, 0.0, 0.0, 0, 0
    for batch in batches:
        out = model(batch.to_dict(), training=False, compute_force=True)
        d_e = (out["energy"].detach() - batch.energy).abs()
        sizes = (batch.ptr[1:] - batch.ptr[:-1]).to(d_e.dtype)
        e_abs += float(d_e.sum())
        e_atom_abs += float((d_e / sizes).sum())
        f_abs += float((out["forces"].detach() - batch.forces).abs().sum())
        n_struct += batch.num_graphs
        n_comp += batch.forces.numel()
    return {
        "energy_mae": e_abs / n_struct,
        "energy_per_atom_mae": e_atom_abs / n_struct,
        "force_mae": f_abs / n_comp,
    }


def baselines(train: list, test: list, e0s: dict[int, float]) -> dict[str, float]:
    """Model-free test baselines: zero forces; training-mean and element-reference energies."""
    mean_e = float(np.mean([c.properties["energy"] for c in train]))
    e_test = np.array([c.properties["energy"] for c in test])
    refs = np.array([sum(e0s[int(z)] for z in c.atomic_numbers) for c in test])
    forces = np.concatenate([c.properties["forces"] for c in test])
    return {
        "zero_force_mae": float(np.abs(forces).mean()),
        "mean_energy_mae": float(np.abs(e_test - mean_e).mean()),
        "element_refs_energy_mae": float(np.abs(e_test - refs).mean()),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=Path, required=True)
    p.add_argument("--val", type=Path, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--budget-cpu-s",
        type=float,
        required=True,
        help="CPU seconds of this process, set-up included",
    )
    p.add_argument("--eval-every-cpu-s", type=float, default=60.0)
    p.add_argument("--r-max", type=float, default=5.0)
    p.add_argument("--hidden-irreps", default="64x0e + 64x1o")
    p.add_argument("--max-ell", type=int, default=3)
    p.add_argument("--correlation", type=int, default=3)
    p.add_argument("--num-interactions", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--ema-decay", type=float, default=0.99)
    p.add_argument("--energy-weight", type=float, default=1.0)
    p.add_argument("--forces-weight", type=float, default=100.0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    torch.set_default_dtype(getattr(torch, args.dtype))
    tools.set_seeds(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    train, val, test = (read_configs(x) for x in (args.train, args.val, args.test))
    z_table = AtomicNumberTable(
        sorted({int(z) for c in train + val + test for z in c.atomic_numbers})
    )
    e0s = data.compute_average_E0s(train, z_table)
    atomic_energies = np.array([e0s[z] for z in z_table.zs])
    train_loader = loader(train, z_table, args.r_max, args.batch_size, shuffle=True)
    val_loader = loader(val, z_table, args.r_max, 10, shuffle=False)
    avg_num_neighbors = modules.compute_avg_num_neighbors(train_loader)
    mean, rms = modules.compute_mean_rms_energy_forces(train_loader, atomic_energies)
    interaction = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=args.r_max,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=args.max_ell,
        interaction_cls=interaction,
        interaction_cls_first=interaction,
        num_interactions=args.num_interactions,
        num_elements=len(z_table),
        hidden_irreps=o3.Irreps(args.hidden_irreps),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=atomic_energies,
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=z_table.zs,
        correlation=args.correlation,
        gate=modules.gate_dict["silu"],
        radial_MLP=[64, 64, 64],
        atomic_inter_scale=rms,
        atomic_inter_shift=mean,
    )
    loss_fn = modules.WeightedEnergyForcesLoss(
        energy_weight=args.energy_weight, forces_weight=args.forces_weight
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, amsgrad=True, weight_decay=5e-7)
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(args.ema_decay)
    )
    n_params = sum(t.numel() for t in model.parameters())

    budget = args.budget_cpu_s
    setup_cpu = time.process_time()
    rows: list[dict] = []
    step, epoch, next_eval = 0, 0, setup_cpu
    epoch_cpu: list[float] = []
    done = False
    while not done:
        epoch_start = time.process_time()
        for batch in train_loader:
            frac = min(1.0, time.process_time() / budget)
            if args.schedule == "cosine":
                lr = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
                for group in optimizer.param_groups:
                    group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            out = model(batch.to_dict(), training=True, compute_force=True)
            loss = loss_fn(pred=out, ref=batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                model.parameters(), 10.0
            )  # mace_run_train's default clip
            optimizer.step()
            ema.update_parameters(model)
            step += 1
            now = time.process_time()
            if now >= next_eval or now >= budget:
                val_m = score(ema.module, val_loader)
                rows.append(
                    {
                        "cpu_s": time.process_time(),
                        "epoch": epoch,
                        "step": step,
                        "lr": optimizer.param_groups[0]["lr"],
                        "loss": float(loss),
                        "val_energy_mae": val_m["energy_mae"],
                        "val_force_mae": val_m["force_mae"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
                next_eval = time.process_time() + args.eval_every_cpu_s
            if time.process_time() >= budget:
                done = True
                break
        else:
            epoch_cpu.append(time.process_time() - epoch_start)
            epoch += 1
    train_cpu = time.process_time()

    with open(args.out / "curve.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    test_m = score(ema.module, loader(test, z_table, args.r_max, 10, shuffle=False))
    val_m = score(ema.module, val_loader)
    metrics = {
        "model": "MACE (mace-torch ScaleShiftMACE)",
        "params": n_params,
        "args": {k: str(v) for k, v in vars(args).items()},
        "setup_cpu_s": setup_cpu,
        "train_cpu_s": train_cpu,
        "steps": step,
        "epochs": step * args.batch_size / len(train),
        "cpu_s_per_epoch": float(np.mean(epoch_cpu)) if epoch_cpu else None,
        "val": val_m,
        "test": test_m,
        "test_baselines": baselines(train, test, e0s),
        "n": {"train": len(train), "val": len(val), "test": len(test)},
    }
    tmp = args.out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1))
    tmp.replace(args.out / "metrics.json")
    torch.save(ema.module.state_dict(), args.out / "model_ema_state.pt")
    print(
        json.dumps(
            {
                k: metrics[k]
                for k in (
                    "train_cpu_s",
                    "steps",
                    "epochs",
                    "cpu_s_per_epoch",
                    "test",
                    "test_baselines",
                )
            }
        )
    )


if __name__ == "__main__":
    main()
