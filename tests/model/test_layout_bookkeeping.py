"""The model takes its layout and grids from eqv2.so3: exact in float64 after any dtype trip."""

from __future__ import annotations

import torch
from torch import nn

from eqv2.model import EquiformerV2
from tests.tiny import tiny_config, tiny_graph, tiny_model


def test_float32_model_moved_to_float64_computes_like_a_float64_one():
    """Sphere grids are not kept in a dtype: a float32 model converted to float64 gives the same
    outputs, bit for bit, as a float64 model with the same weights and buffers (the layers'
    own float buffers, such as the distance basis centres, do pass through float32)."""
    trip = tiny_model(torch.float32).to(torch.float64).eval()
    direct = EquiformerV2(tiny_config()).to(torch.float64).eval()
    direct.load_state_dict(trip.state_dict())
    graph = tiny_graph(trip)
    buffers = dict(direct.named_buffers())
    with torch.no_grad():
        for name, buffer in trip.named_buffers():
            buffer.copy_(buffers[name])
    a, b = trip(graph), direct(graph)
    assert torch.equal(a["energy"], b["energy"]) and torch.equal(a["forces"], b["forces"])


def test_the_model_keeps_no_dtype_bookkeeping():
    assert EquiformerV2._apply is nn.Module._apply
    model = tiny_model()
    assert model.layout.lmax == 2 and model.layout.mmax == 1
    assert not [name for name, _ in model.named_buffers() if name.startswith("grid_")]
