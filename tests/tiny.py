"""The tiny EquiformerV2 shared by fast tests: its sizes, config, model and a small batch.

``tiny_model()`` is the one hand-built model of the suite (``tests/conftest.py`` offers it in
float64 as the ``tiny_float64_model`` fixture); a test that needs another variant passes only the
keys it changes (``tiny_model(use_grid_mlp=True)``), so what it tests stays visible.
"""

from __future__ import annotations

from typing import Any

import torch

#: One block, 8 channels, 2 heads: builds and runs in milliseconds.
TINY_WIDTHS: dict[str, Any] = dict(
    num_layers=1,
    sphere_channels=8,
    attn_hidden_channels=8,
    num_heads=2,
    attn_alpha_channels=4,
    attn_value_channels=4,
    edge_channels=8,
)

#: The tiny model's config: ``TINY_WIDTHS``, lmax 2 / mmax 1 on an 8×8 sphere grid; the
#: cutoff, neighbour cap and elements are the reference's defaults unless a test sets them.
TINY_MODEL: dict[str, Any] = {
    **TINY_WIDTHS,
    "ffn_hidden_channels": 8,
    "lmax_list": [2],
    "mmax_list": [1],
    "grid_resolution": 8,
}


def tiny(**overrides: Any) -> dict[str, Any]:
    """``TINY_WIDTHS`` plus the test's own keys (which may also replace a width)."""
    return {**TINY_WIDTHS, **overrides}


def tiny_config(**overrides: Any):
    """`EquiformerV2Config` of ``TINY_MODEL`` with ``overrides`` applied."""
    from eqv2.model import EquiformerV2Config

    return EquiformerV2Config(**{**TINY_MODEL, **overrides})


def tiny_model(
    dtype: torch.dtype | None = None, seed: int | None = 0, **overrides: Any
) -> torch.nn.Module:
    """The tiny `EquiformerV2` of ``tiny_config(**overrides)``, weights drawn after
    ``torch.manual_seed(seed)`` (no seeding with ``seed=None``), in ``dtype`` if given, in
    training mode as every freshly built module (call ``.eval()`` for inference)."""
    from eqv2.model import EquiformerV2

    if seed is not None:
        torch.manual_seed(seed)
    model = EquiformerV2(tiny_config(**overrides))
    if dtype is not None:
        model = model.to(dtype)
    return model


def tiny_structures() -> list:
    """Two small structures: a periodic Cu cell with an O atom, and a CO molecule."""
    from ase import Atoms
    from ase.build import bulk

    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    cell += Atoms("O", positions=[[0.9, 0.9, 1.0]])
    cell.rattle(0.05, seed=3)
    molecule = Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.3, 0.4, 1.1]])
    return [cell, molecule]


def tiny_graph(model: torch.nn.Module, structures: list | None = None) -> dict[str, torch.Tensor]:
    """A batch of ``structures`` (default `tiny_structures`) for ``model``, in its dtype."""
    from eqv2.graph import batch_structures

    c = model.config
    dtype = next(model.parameters()).dtype
    return batch_structures(
        tiny_structures() if structures is None else structures,
        cutoff=c.max_radius,
        max_neighbors=c.max_neighbors,
        dtype=dtype,
    )


def fitted_potential(frames: list, model: dict[str, Any], seed: int | None = 0):
    """A `Potential` of ``EquiformerV2Config(**model)`` whose element references and
    normalisers are fitted on ``frames`` (labelled ``ase.Atoms``; forces without constraints),
    weights drawn after ``torch.manual_seed(seed)`` (no seeding with ``seed=None``)."""
    from eqv2.data.targets import fit_element_references, fit_normalizers
    from eqv2.model import EquiformerV2, EquiformerV2Config, Potential

    if seed is not None:
        torch.manual_seed(seed)
    numbers = [a.numbers for a in frames]
    energies = [a.get_potential_energy() for a in frames]
    refs = fit_element_references(numbers, energies)
    forces = [a.get_forces(apply_constraint=False) for a in frames]
    normalizers = fit_normalizers(energies, forces, numbers, refs)
    return Potential(EquiformerV2(EquiformerV2Config(**model)), normalizers, torch.as_tensor(refs))
