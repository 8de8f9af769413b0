"""Build a synthetic OC20-like S2EF LMDB (directory of shards) and measure its index.

The records are rattled copies of EMT-labelled slab+adsorbate frames from
``eqv2.data.generate`` (about 70 atoms each; each copy keeps its source frame's labels: the
throughput and memory measurements do not care about label quality), pickled in the OC20 record
layout (torch_geometric ``Data`` with float32 tensors, ``y``, ``force``, ``tags``, ``fixed``,
``sid``, ``fid``) under keys ``b"0"``, ``b"1"``, ... plus ``b"length"``, like fairchem's
preprocessing. Nothing is committed: the data go to ``--out``.

Then, each in a fresh process so that memory and timing are not shared:

1. ``index_build_s``: ``open_dataset(out, rebuild_index=True)``, which decodes every record
   once for its atom count (fairchem's ``metadata.npz`` is not written unless asked for);
2. ``open_with_index_s`` and ``rss_after_open_mib`` (minus the same process's RSS before the
   open, ``rss_before_open_mib``, which is Python + numpy + eqv2 imported): reopening with the
   index present, median of ``--repeats`` fresh processes;
3. ``read_ms_per_record``: random ``ds[i]`` reads after the open.

Usage (the numbers in docs/benchmarks.md came from this)::

    nice python benchmarks/make_synthetic_lmdb.py --out /tmp/eqv2-synth-200k --n 200000
"""

from __future__ import annotations

import argparse
import json
import pickle
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.data.oc20_writer import oc20_fields, pickle_record  # noqa: E402

from eqv2.data import from_atoms  # noqa: E402
from eqv2.data.generate import generate_dataset  # noqa: E402

_MEASURE_OPEN = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
import numpy as np
from eqv2.data import open_dataset

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

before = rss_mib()
t0 = time.perf_counter()
ds = open_dataset({path!r}, rebuild_index={rebuild})
opened = time.perf_counter() - t0
after = rss_mib()
rng = np.random.default_rng(0)
idx = rng.integers(0, len(ds), {reads})
t1 = time.perf_counter()
atoms = sum(len(ds[int(i)]) for i in idx)
read = (time.perf_counter() - t1) / len(idx)
print(json.dumps(dict(n=len(ds), open_s=opened, rss_before_open_mib=before,
                      rss_after_open_mib=after, read_ms_per_record=read * 1e3,
                      atoms_read=int(atoms), index=str(ds.index_path))))
"""


def base_frames(systems: int, seed: int) -> list:
    """EMT-labelled OC20-like frames of ~70 atoms (4x4 slabs of 4 layers plus an adsorbate)."""
    ds = generate_dataset(
        systems, seed, sizes=((4, 4),), layers=(4,), relax_steps=3, rattle_frames=1
    )
    return [from_atoms(a) for a in ds.s2ef_frames]


def write_shards(out: Path, n: int, shards: int, frames: list, seed: int) -> None:
    """``n`` rattled copies of ``frames`` in ``shards`` LMDB files (OC20 record layout)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=False)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for s in range(shards):
        env = lmdb.open(str(out / f"data.{s:04d}.lmdb"), subdir=False, map_size=1 << 36, lock=False)
        count = int(bounds[s + 1] - bounds[s])
        txn = env.begin(write=True)
        for k in range(count):
            gi = int(bounds[s]) + k
            record = frames[gi % len(frames)].copy()
            free = ~record.fixed
            record.positions[free] += rng.normal(0.0, 0.05, (int(free.sum()), 3))
            record.info["index"] = gi
            txn.put(str(k).encode("ascii"), pickle_record(oc20_fields(record), 2))
            if k % 5000 == 4999:  # bounded transactions
                txn.commit()
                txn = env.begin(write=True)
        txn.put(b"length", pickle.dumps(count, protocol=-1))
        txn.commit()
        env.sync(True)
        env.close()


def measure(path: Path, rebuild: bool, reads: int) -> dict:
    code = _MEASURE_OPEN.format(src=str(REPO / "src"), path=str(path), rebuild=rebuild, reads=reads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="new directory for the shards")
    p.add_argument("--n", type=int, default=200_000, help="number of structures")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--systems", type=int, default=6, help="EMT systems to draw frames from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="fresh-process opens to time")
    p.add_argument("--reads", type=int, default=2000, help="random reads to time")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    frames = base_frames(args.systems, args.seed)
    t1 = time.perf_counter()
    write_shards(args.out, args.n, args.shards, frames, args.seed)
    t2 = time.perf_counter()
    build = measure(args.out, rebuild=True, reads=10)
    opens = [measure(args.out, rebuild=False, reads=args.reads) for _ in range(args.repeats)]
    size = sum(f.stat().st_size for f in args.out.glob("*.lmdb"))
    result = {
        "n": args.n,
        "shards": args.shards,
        "mean_atoms": float(np.mean([len(f) for f in frames])),
        "data_bytes": size,
        "generate_frames_s": t1 - t0,
        "write_s": t2 - t1,
        "index_build_s": build["open_s"],
        "index_file": build["index"],
        "open_with_index_s": statistics.median(o["open_s"] for o in opens),
        "open_with_index_s_all": [o["open_s"] for o in opens],
        "rss_before_open_mib": statistics.median(o["rss_before_open_mib"] for o in opens),
        "rss_after_open_mib": statistics.median(o["rss_after_open_mib"] for o in opens),
        "read_ms_per_record": statistics.median(o["read_ms_per_record"] for o in opens),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
