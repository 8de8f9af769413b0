"""EquiformerV2: config, model, checkpoints (layer 4)."""

from eqv2.model.config import EquiformerV2Config

__all__ = ["EquiformerV2Config"]
