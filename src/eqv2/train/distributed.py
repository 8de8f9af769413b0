"""Multi-process data-parallel training: torchrun's environment, the process group, collectives.

``torchrun --nproc_per_node N -m eqv2 train ...`` starts N copies of the program with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set (on several nodes,
torchrun's ``--nnodes``/``--node_rank``/``--rdzv_endpoint`` flags set the same variables).
`distributed_session` reads them, joins the process group (NCCL for CUDA devices, gloo on CPU)
and leaves it cleanly. Without those variables everything here is a no-op for a single process,
so the same code path trains on one CPU and on many GPUs.

The collectives (`all_reduce_sum`, `all_gather_objects`) return their input unchanged when no
process group is initialised.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

#: The torchrun variables that describe this process's place in the job.
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistributedEnv:
    """This process's rank among ``world_size`` processes and its rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and plots."""
        return self.rank == 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistributedEnv:
        """Read torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (absent: one process).

        Raises:
            ValueError: a variable is not an integer, is out of range, or only some are set.
        """
        environ = os.environ if environ is None else environ
        present = [name for name in ENV_VARS if name in environ]
        if not present:
            return cls()
        values: dict[str, int] = {}
        for name in ENV_VARS:
            raw = environ.get(name, "0" if name == "LOCAL_RANK" else None)
            if raw is None:
                raise ValueError(
                    f"{', '.join(present)} set but {name} is not: start multi-process training "
                    "with torchrun (or set RANK, WORLD_SIZE and LOCAL_RANK together)."
                )
            try:
                values[name] = int(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r}: not an integer.") from None
        rank, world, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
        if world < 1 or not 0 <= rank < world or not 0 <= local <= rank:
            raise ValueError(
                f"RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: need "
                "0 <= LOCAL_RANK <= RANK < WORLD_SIZE."
            )
        return cls(rank, world, local)

    @classmethod
    def current(cls) -> DistributedEnv:
        """The initialised process group's rank and size, else torchrun's variables."""
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return cls(dist.get_rank(), dist.get_world_size(), local)
        return cls.from_environ()


def process_group_env() -> DistributedEnv:
    """The process group's ranks for training: one process when no group is initialised.

    Raises:
        RuntimeError: torchrun started several processes but this one joined no group (each
            would train alone and overwrite the others' files).
    """
    env = DistributedEnv.current()
    if env.world_size > 1 and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            f"WORLD_SIZE={env.world_size} but no process group is initialised: run the "
            "training inside eqv2.train.distributed.distributed_session (eqv2 train does)."
        )
    return env


def resolve_device(name: str, env: DistributedEnv | None = None) -> torch.device:
    """The training device for ``name`` (``auto``, ``cpu``, ``cuda`` or ``cuda:K``).

    ``auto`` is CUDA when available, else CPU. With several processes, ``cuda`` means this
    process's GPU, ``cuda:LOCAL_RANK``: torchrun starts one process per GPU of a node.

    Raises:
        ValueError: an unknown name, CUDA requested but absent, or fewer GPUs than processes.
    """
    env = env or DistributedEnv.current()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"train.device={name!r}: use auto, cpu, cuda or cuda:K.") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ValueError(f"train.device={name!r}: only cpu and cuda devices are supported.")
    if not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but this torch sees no CUDA device; use cpu.")
    if env.world_size > 1:
        if device.index is not None and device.index != env.local_rank:
            raise ValueError(
                f"train.device={name!r} under torchrun: each process takes the GPU of its "
                "LOCAL_RANK; set train.device to cuda (or auto)."
            )
        if env.local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={env.local_rank} but {torch.cuda.device_count()} GPU(s) are visible: "
                "start at most one process per GPU (--nproc_per_node)."
            )
        return torch.device("cuda", env.local_rank)
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


@contextlib.contextmanager
def distributed_session(device: torch.device) -> Iterator[DistributedEnv]:
    """Join torchrun's process group for the duration of the block (a no-op for one process).

    NCCL is used when ``device`` is a CUDA device (which becomes this process's current
    device), gloo otherwise. A group initialised by the caller is used as it is and left open.
    """
    env = DistributedEnv.current()
    if env.world_size == 1 or dist.is_initialized():
        yield env
        return
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed: train with one process.")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield env
    finally:
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all processes (a new tensor; the input itself for one process).

    With NCCL the reduction runs on the current CUDA device; the result keeps the input's device.
    """
    if not _active():
        return tensor
    device = tensor.device
    if dist.get_backend() == "nccl":
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(device)


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` for one process); picklable objects."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for all processes (nothing to wait for with one)."""
    if _active():
        dist.barrier()


def data_parallel(
    model: torch.nn.Module, device: torch.device
) -> torch.nn.parallel.DistributedDataParallel:
    """``model`` wrapped in ``DistributedDataParallel`` for eqv2's training step.

    No buffer holds state (no batch norm), so nothing is broadcast before each forward; every
    parameter gets a gradient in every configuration, so there is no unused-parameter scan.
    """
    ddp = torch.nn.parallel.DistributedDataParallel
    new_name = "forward_sync_buffers"  # the option's name since torch 2.13
    no_sync = new_name if new_name in inspect.signature(ddp).parameters else "broadcast_buffers"
    ids = [device.index] if device.type == "cuda" else None
    return ddp(model, device_ids=ids, **{no_sync: False})
