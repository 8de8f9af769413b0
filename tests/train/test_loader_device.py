"""The loader's GPU path without a GPU: pinned batches, asynchronous copies, the pinning switch.

``pin_memory`` needs a CUDA runtime and is replaced by a recorder; the copy goes to the
``meta`` device, which any build of torch has and which is not the CPU.
"""

from __future__ import annotations

import pytest
import torch

from eqv2.train.loader import LabelledBatch, LoaderConfig, StepBatch, make_loader
from tests.train.test_loader import _reader


def _tensors(batch: LabelledBatch) -> list[torch.Tensor]:
    out = [batch.energy, batch.reference, batch.forces, *batch.graph.values()]
    return [t for t in out if t is not None]


def test_every_tensor_of_a_step_is_pinned(monkeypatch):
    pinned: list[int] = []

    def pin(self: torch.Tensor) -> torch.Tensor:
        copy = self.clone()
        pinned.append(id(copy))
        return copy

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    reader = _reader()
    step = StepBatch([reader.batch([0, 1]), reader.batch([2])], 3, epoch=1, position=4)
    out = step.pin_memory()
    assert (out.num_structures, out.epoch, out.position) == (3, 1, 4)
    tensors = [t for micro in out.micro for t in _tensors(micro)]
    assert len(tensors) > 6 and all(id(t) in pinned for t in tensors)
    for before, after in zip(step.micro, out.micro, strict=True):
        assert after.indices == before.indices
        for a, b in zip(_tensors(before), _tensors(after), strict=True):
            assert torch.equal(a, b)


def test_batches_move_to_the_device_with_asynchronous_copies(monkeypatch):
    batch = _reader().batch([2, 0])
    assert batch.to(torch.device("cpu")) is batch  # nothing to copy
    blocking: list[bool] = []
    to = torch.Tensor.to

    def record(self: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        blocking.append(kwargs.get("non_blocking", False))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", record)
    moved = batch.to(torch.device("meta"))
    tensors = _tensors(moved)
    assert all(t.device.type == "meta" for t in tensors)
    assert len(blocking) == len(tensors) and all(blocking)  # overlaps compute from pinned memory
    assert moved.indices == batch.indices


@pytest.mark.parametrize(
    ("device", "cuda", "setting", "pinned"),
    [
        ("cuda", True, None, True),  # default: pinned on CUDA
        ("cpu", True, None, False),  # never for CPU training
        ("cuda", True, False, False),  # switched off
        ("cuda", False, True, False),  # no CUDA runtime: nothing to pin for
    ],
)
def test_pinning_follows_the_device_and_the_setting(monkeypatch, device, cuda, setting, pinned):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    config = LoaderConfig(num_workers=2, prefetch_factor=3, pin_memory=setting)
    loader = make_loader(_reader(), [], config, torch.device(device), seed=0)
    assert loader.pin_memory is pinned
    assert loader.num_workers == 2 and loader.prefetch_factor == 3
    assert loader.persistent_workers  # the workers live for the whole run
