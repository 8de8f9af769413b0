"""fairchem/OCP EquiformerV2 checkpoints: read them into eqv2, write files fairchem 1.x reads.

One job per module:

- :mod:`~eqv2.fairchem.keys`: parameter names (``module.`` prefixes, hydra ↔ monolithic
  layouts, fairchem's buffers);
- :mod:`~eqv2.fairchem.config`: fairchem model configs → :class:`EquiformerV2Config` and heads;
- :mod:`~eqv2.fairchem.ema`: EMA shadow weights matched to parameter names;
- :mod:`~eqv2.fairchem.read`: :func:`read_fairchem_checkpoint`, the one entry point that
  :func:`eqv2.load_model` uses for fairchem files;
- :mod:`~eqv2.fairchem.write`: :func:`to_fairchem_checkpoint` (export).

This package sits beside :mod:`eqv2.model`: it uses the model's config, heads and safe file
I/O; ``eqv2.model.loading`` imports it only inside the functions that need it.
"""

from eqv2.fairchem.config import ENERGY_HEAD_MODULES, FORCE_HEAD_MODULES
from eqv2.fairchem.keys import (
    Layout,
    detect_layout,
    from_fairchem_state_dict,
    hydra_to_monolithic_key,
    is_fairchem_buffer,
    monolithic_to_hydra_key,
    strip_module_prefix,
    to_fairchem_state_dict,
)
from eqv2.fairchem.read import (
    FairchemCheckpoint,
    denoising_recipe,
    is_fairchem_checkpoint,
    read_fairchem_checkpoint,
)
from eqv2.fairchem.write import to_fairchem_checkpoint

__all__ = [
    "ENERGY_HEAD_MODULES",
    "FORCE_HEAD_MODULES",
    "FairchemCheckpoint",
    "Layout",
    "denoising_recipe",
    "detect_layout",
    "from_fairchem_state_dict",
    "hydra_to_monolithic_key",
    "is_fairchem_buffer",
    "is_fairchem_checkpoint",
    "monolithic_to_hydra_key",
    "read_fairchem_checkpoint",
    "strip_module_prefix",
    "to_fairchem_checkpoint",
    "to_fairchem_state_dict",
]
