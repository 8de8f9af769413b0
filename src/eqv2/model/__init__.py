"""EquiformerV2: config, model, potential (model + normalisers), checkpoints (layer 4)."""

from eqv2.model.config import EquiformerV2Config
from eqv2.model.equiformer_v2 import EquiformerV2
from eqv2.model.loading import export_fairchem, load_model, save_model
from eqv2.model.potential import Potential

__all__ = [
    "EquiformerV2",
    "EquiformerV2Config",
    "Potential",
    "export_fairchem",
    "load_model",
    "save_model",
]
