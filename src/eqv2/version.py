"""eqv2's version: the single source, read by ``eqv2.__version__``, by checkpoints (which
record the version that wrote them) and by the build (``pyproject.toml``'s dynamic version)."""

__version__ = "0.1.0"
