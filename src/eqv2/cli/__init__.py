"""The ``eqv2`` command (layer 6): thin wrappers over the library."""

from eqv2.cli.main import main

__all__ = ["main"]
