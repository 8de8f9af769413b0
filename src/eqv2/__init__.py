"""eqv2: the EquiformerV2 equivariant transformer, faithful to the reference, fast and safe.

Quick start::

    import eqv2
    model = eqv2.load_model("checkpoint.pt")        # eqv2 or fairchem checkpoint, loaded safely
    result = model.predict(atoms)                    # {"energy": float, "forces": (N, 3) array}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eqv2.allocator import release_memory, tune_allocator
from eqv2.version import __version__

_MODEL_API = (
    "EquiformerV2",
    "EquiformerV2Config",
    "Potential",
    "export_fairchem",
    "load_model",
    "save_model",
)

_SIMULATE_API = ("EqV2Calculator", "load_calculator")

__all__ = [
    "EqV2Calculator",
    "EquiformerV2",
    "EquiformerV2Config",
    "Potential",
    "__version__",
    "export_fairchem",
    "load_calculator",
    "load_model",
    "release_memory",
    "save_model",
    "tune_allocator",
]

if TYPE_CHECKING:
    from eqv2.model import (
        EquiformerV2,
        EquiformerV2Config,
        Potential,
        export_fairchem,
        load_model,
        save_model,
    )
    from eqv2.simulate import EqV2Calculator, load_calculator


def __getattr__(name: str) -> Any:
    # Lazy: `import eqv2.graph` or `eqv2.so3` should not import the whole model stack.
    if name in _MODEL_API:
        import eqv2.model

        return getattr(eqv2.model, name)
    if name in _SIMULATE_API:
        import eqv2.simulate

        return getattr(eqv2.simulate, name)
    raise AttributeError(f"module 'eqv2' has no attribute {name!r}")
