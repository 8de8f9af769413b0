"""eqv2: the EquiformerV2 equivariant transformer, faithful to the reference, fast and safe."""

__version__ = "0.1.0"
