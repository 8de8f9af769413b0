"""Run a training command and record its CPU time beside its learning curve.

The small-data study compares models at equal CPU-time budgets (docs/small_data_study.md).
`eqv2 train` logs validation errors per step in `log.csv` but not CPU time, so this wrapper
runs the command as a child process (one thread, no DataLoader workers, so the child's own
CPU time is the whole cost), samples the child's user+system CPU time from /proc every few
seconds together with the last step in `log.csv`, and writes `cpu_timeline.csv`
(wall_s, cpu_s, step) and `cpu_total.json` into the run directory. Linux only.

    python benchmarks/study/cpu_timeline.py --out RUN_DIR -- eqv2 train CONFIG ... --out RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and its waited-for children (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / _TICKS


def last_step(log_csv: Path) -> int:
    """The step of the last complete row of an eqv2 `log.csv` (0 before the first step)."""
    try:
        lines = log_csv.read_text().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines[1:]):
        head = line.split(",", 1)[0]
        if head.isdigit():
            return int(head)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="the run directory the command writes"
    )
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = subprocess.Popen(command, env=env)
    rows = []
    cpu = 0.0
    while child.poll() is None:
        try:
            cpu = cpu_seconds(child.pid)
        except (FileNotFoundError, ProcessLookupError):
            break
        rows.append((time.monotonic() - start, cpu, last_step(args.out / "log.csv")))
        time.sleep(args.every)
    code = child.wait()
    # Once waited for, the child's whole CPU time is in this process's children's usage.
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_total = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    with open(args.out / "cpu_timeline.csv", "w") as fh:
        fh.write("wall_s,cpu_s,step\n")
        fh.writelines(f"{w:.1f},{c:.1f},{s}\n" for w, c, s in rows)
    (args.out / "cpu_total.json").write_text(
        json.dumps(
            {
                "cpu_s": cpu_total,
                "wall_s": time.monotonic() - start,
                "exit_code": code,
                "command": command,
            }
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
