"""Data-parallel training: torchrun's environment, devices, and DDP equal to one process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import eqv2
from eqv2.data.generate import generate_dataset
from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.train.batching import split_batch
from eqv2.train.distributed import (
    DistributedEnv,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    distributed_session,
    process_group_env,
    resolve_device,
)
from eqv2.train.loader import LoaderConfig
from eqv2.train.trainer import Trainer, TrainerConfig
from tests.train.test_trainer import TINY as TRAINER_TINY

#: The trainer tests' model, without dropout (the processes' dropout masks differ).
TINY = {**TRAINER_TINY, "alpha_drop": 0.0, "drop_path_rate": 0.0}
#: Structures of different sizes: the two processes' shares differ in atoms and free atoms.
GLOBAL_BATCH = [5, 0, 3, 6, 1]


def _frames():
    ds = generate_dataset(2, seed=3, relax_steps=2, rattle_frames=1, sizes=((2, 2),), layers=(3,))
    return ds.s2ef_frames


def _trainer(frames, out: Path, direct_forces: bool) -> Trainer:
    torch.manual_seed(0)
    normalizers = {"energy": {"mean": -1.0, "std": 2.0}, "forces": {"mean": 0.0, "std": 0.5}}
    model = EquiformerV2(EquiformerV2Config(**TINY, direct_forces=direct_forces))
    potential = Potential(model, normalizers).to(torch.float64)
    config = TrainerConfig(max_steps=5, lr=1e-2, warmup_steps=0, ema_decay=None, device="cpu",
                           tensorboard=False, force_coefficient=5.0)  # fmt: skip
    return Trainer(potential, frames, out, config, val=frames[:3])


def _one_step(trainer: Trainer) -> dict:
    row = trainer.train_step(GLOBAL_BATCH)
    model = trainer.model
    return {
        "row": row,
        "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters()},
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "val": trainer.validate(trainer.val_set),
    }


def _worker(rank: int, world: int, port: int, frames, out: Path) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    with distributed_session(torch.device("cpu")) as env:
        assert (env.rank, env.world_size) == (rank, world)
        results = {
            direct: _one_step(_trainer(frames, out / f"direct_{direct}", direct))
            for direct in (True, False)
        }
        results["gathered"] = all_gather_objects(rank)
        # resume under DDP: rank 0 writes, every rank reads, training goes on identically
        first = _trainer(frames, out / "resume", True)
        first.train_step(GLOBAL_BATCH)
        first.save()
        barrier()
        second = _trainer(frames, out / "resume", True)
        second.resume()
        for trainer in (first, second):
            trainer.train_step(GLOBAL_BATCH[::-1])
        results["resumed"] = [dict(t.model.named_parameters()) for t in (first, second)]
    torch.save(results, out / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_global_batch(tmp_path):
    frames = _frames()
    natoms = [len(a) for a in frames]
    shares = split_batch(GLOBAL_BATCH, natoms, 2)
    free = [sum(len(frames[i]) - len(frames[i].constraints[0].index) for i in s) for s in shares]
    assert len(shares[0]) != len(shares[1]) and free[0] != free[1]  # normalisation matters

    singles = {direct: _one_step(_trainer(frames, tmp_path / "single", direct))
               for direct in (True, False)}  # fmt: skip
    # fork: the workers inherit the imported modules (spawning costs seconds per process)
    torch.multiprocessing.start_processes(
        _worker, args=(2, _free_port(), frames, tmp_path), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["gathered"] == [0, 1]
    for rank in ranks:
        for name, param in rank["resumed"][0].items():
            torch.testing.assert_close(rank["resumed"][1][name], param, rtol=0, atol=0, msg=name)
    for direct, single in singles.items():  # direct force head; −dE/dx trained with create_graph
        for result in (r[direct] for r in ranks):
            for name, grad in single["grads"].items():
                torch.testing.assert_close(result["grads"][name], grad, rtol=1e-9, atol=1e-13,
                                           msg=f"gradient {name}, direct={direct}")  # fmt: skip
            for name, param in single["params"].items():
                torch.testing.assert_close(result["params"][name], param, rtol=1e-9, atol=1e-13,
                                           msg=f"weight {name}, direct={direct}")  # fmt: skip
            for key, value in single["row"].items():
                assert result["row"][key] == pytest.approx(value, rel=1e-10), key
            assert result["val"]["n_structures"] == single["val"]["n_structures"] == 3
            for key, value in single["val"].items():
                assert result["val"][key] == pytest.approx(value, rel=1e-10), key
    assert not list(tmp_path.glob("direct_*/**/*.pt"))  # no checkpoint was asked for
    assert [p.name for p in (tmp_path / "resume").iterdir()] == ["checkpoint.pt"]


@pytest.mark.slow
def test_torchrun_trains_end_to_end_with_one_set_of_outputs(tmp_path):
    from ase.io import write

    frames = _frames()
    write(tmp_path / "train.extxyz", frames[:6])
    write(tmp_path / "val.extxyz", frames[6:])
    config = tmp_path / "tiny.yaml"
    model = "\n".join(f"  {k}: {v}" for k, v in TINY.items())
    config.write_text(
        f"model:\n{model}\ntrain:\n  max_steps: 4\n  max_atoms_per_batch: 30\n"
        "  eval_every: 2\n  checkpoint_every: 2\n  warmup_steps: 1\n  device: cpu\n"
    )
    out = tmp_path / "run"
    src = str(Path(eqv2.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "eqv2", "train", str(config), "--train", str(tmp_path / "train.extxyz"),
           "--val", str(tmp_path / "val.extxyz"), "--out", str(out), "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("force MAE") == 1  # only rank 0 prints the table
    for name in ("checkpoint.pt", "best.pt", "final.pt", "metrics.json", "log.csv"):
        assert (out / name).exists(), name
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]  # one writer
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert not list(out.glob(".*.pt*"))  # no temporary checkpoint left behind
    state = torch.load(out / "checkpoint.pt", weights_only=True)["extra"]["training_state"]
    assert state["world_size"] == 2 and len(state["rng_by_rank"]) == 2
    assert state["step"] == 4


def test_environment_is_read_like_torchrun_writes_it():
    assert DistributedEnv.from_environ({}) == DistributedEnv(0, 1, 0)
    env = DistributedEnv.from_environ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert env == DistributedEnv(3, 4, 1) and not env.is_main
    with pytest.raises(ValueError, match="WORLD_SIZE is not"):
        DistributedEnv.from_environ({"RANK": "0"})
    with pytest.raises(ValueError, match="RANK='x': not an integer"):
        DistributedEnv.from_environ({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK=2, WORLD_SIZE=2"):
        DistributedEnv.from_environ({"RANK": "2", "WORLD_SIZE": "2"})


def test_several_processes_without_a_process_group_are_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="no process group is initialised"):
        process_group_env()


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="use auto, cpu, cuda"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="only cpu and cuda"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA device"):
            resolve_device("cuda")


def test_one_process_needs_no_process_group():
    with distributed_session(torch.device("cpu")) as env:
        assert env == DistributedEnv()
        t = torch.arange(3.0)
        assert all_reduce_sum(t) is t
        assert all_gather_objects("x") == ["x"]


def _fit_trainer(frames, out: Path, dropout: float = 0.0, **train) -> Trainer:
    torch.manual_seed(0)
    normalizers = {"energy": {"mean": -1.0, "std": 2.0}, "forces": {"mean": 0.0, "std": 0.5}}
    cfg = {**TINY, "alpha_drop": dropout, "drop_path_rate": dropout}
    potential = Potential(EquiformerV2(EquiformerV2Config(**cfg)), normalizers).to(torch.float64)
    config = TrainerConfig(**{**dict(max_steps=4, lr=1e-2, warmup_steps=0, ema_decay=None,
                           device="cpu", tensorboard=False, max_atoms_per_batch=70,
                           checkpoint_every=100), **train})  # fmt: skip
    trainer = Trainer(potential, frames, out, config, loader=LoaderConfig(num_workers=1))
    seen: list[list[int]] = []
    step = trainer.train_step
    trainer.train_step = lambda batch: (seen.append(batch.indices), step(batch))[1]
    trainer.seen = seen
    return trainer


class _Killed(Exception):
    pass


def _fit_worker(rank: int, world: int, port: int, frames, out: Path) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    results = {}
    with distributed_session(torch.device("cpu")):
        plain = _fit_trainer(frames, out / "plain")
        plain.fit()
        results["plain"] = {n: p.detach().clone() for n, p in plain.model.named_parameters()}
        results["seen"] = plain.seen
        results["epochs"] = [len(plain.plan.global_batches(e)) for e in range(2)]
        # dropout on (each rank its own stream): killed after step 3, resumed from step 2
        straight = _fit_trainer(frames, out / "straight", dropout=0.2)
        straight.fit()
        killed = _fit_trainer(frames, out / "killed", dropout=0.2, checkpoint_every=2)

        def kill(row):
            if row["step"] == 3:
                raise _Killed

        killed.on_step = kill
        try:
            killed.fit()
        except _Killed:
            pass
        barrier()
        resumed = _fit_trainer(frames, out / "killed", dropout=0.2, checkpoint_every=2)
        resumed.resume()
        assert resumed.step == 2
        resumed.fit()
        results["straight"] = dict(straight.model.named_parameters())
        results["resumed"] = dict(resumed.model.named_parameters())
    torch.save(results, out / f"fit{rank}.pt")


@pytest.mark.slow
def test_two_gloo_processes_fit_like_one_and_resume_exactly(tmp_path):
    """fit() on 2 ranks with a DataLoader worker each: disjoint shards covering each epoch,
    the weights of one process on the same global batches, and a bit-identical resume."""
    frames = _frames()
    single = _fit_trainer(frames, tmp_path / "single")
    single.fit()
    torch.multiprocessing.start_processes(
        _fit_worker, args=(2, _free_port(), frames, tmp_path), nprocs=2, start_method="fork"
    )
    ranks = [torch.load(tmp_path / f"fit{r}.pt", weights_only=False) for r in range(2)]
    per_epoch = ranks[0]["epochs"][0]
    assert per_epoch < 4  # the run crosses into epoch 1
    for k, step in enumerate(zip(ranks[0]["seen"], ranks[1]["seen"], strict=True)):
        assert not set(step[0]) & set(step[1])
        assert sorted(step[0] + step[1]) == sorted(single.seen[k])  # the same global batch
    epoch0 = [i for r in ranks for batch in r["seen"][:per_epoch] for i in batch]
    assert sorted(epoch0) == list(range(len(frames)))
    for name, value in single.model.named_parameters():
        for rank in ranks:
            torch.testing.assert_close(rank["plain"][name], value.detach(), rtol=1e-9,
                                       atol=1e-12, msg=name)  # fmt: skip
            torch.testing.assert_close(rank["resumed"][name], rank["straight"][name], rtol=0,
                                       atol=0, msg=name)  # fmt: skip
