#!/usr/bin/env python
"""Where eqv2's time goes: torch.profiler table of one benchmark step, by op (self CPU time).

Usage (same batch, configs and modes as bench_model.py; configs are read from configs/*.yaml):

    .venv/bin/python benchmarks/profile_model.py --config paper31m --mode fwdbwd --top 15
    .venv/bin/python benchmarks/profile_model.py --config small --mode fwd --shapes

One warm-up step, then one profiled step (graph construction excluded: it is timed on its own
by bench_model.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_model as B  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="paper31m", choices=list(B.CONFIGS))
    ap.add_argument("--mode", default="fwdbwd", choices=["fwd", "fwdbwd"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--shapes", action="store_true", help="group rows by input shapes too")
    args = ap.parse_args(argv)

    import torch
    from torch.profiler import ProfilerActivity, profile

    from eqv2 import tune_allocator
    from eqv2.graph import batch_structures
    from eqv2.model import EquiformerV2, EquiformerV2Config

    tune_allocator()  # as eqv2's CLI does: freed memory is reused (eqv2.allocator)
    torch.set_num_threads(args.threads)
    cfg = EquiformerV2Config.from_dict(B.CONFIGS[args.config])  # configs/*.yaml's model section
    graph = batch_structures(
        B.oc20_like_batch_structures(),
        cutoff=cfg.max_radius,
        max_neighbors=cfg.max_neighbors,
        strict=cfg.enforce_max_neighbors_strictly,
        dtype=torch.float32,
    )
    torch.manual_seed(0)
    model = EquiformerV2(cfg)
    gen = torch.Generator().manual_seed(0)
    e_ref = torch.randn(int(graph["natoms"].shape[0]), generator=gen)
    f_ref = torch.randn(int(graph["pos"].shape[0]), 3, generator=gen)

    def step():
        if args.mode == "fwd":
            model.eval()
            with torch.inference_mode():
                model(graph)
        else:
            model.train()
            out = model(graph)
            mse = torch.nn.functional.mse_loss
            (mse(out["energy"], e_ref) + mse(out["forces"], f_ref)).backward()
            model.zero_grad(set_to_none=True)

    step()
    t0 = time.perf_counter()
    step()
    plain = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        step()
    averages = prof.key_averages(group_by_input_shape=args.shapes)
    total = sum(e.self_cpu_time_total for e in averages)
    print(
        f"eqv2 {args.config}:{args.mode}, {args.threads} threads: step {plain:.3f} s unprofiled; "
        f"profiled self CPU total {total / 1e6:.3f} s"
    )
    print(
        averages.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
