"""An ASE calculator backed by an eqv2 model."""

from __future__ import annotations

import os

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from eqv2.model.loading import load_model
from eqv2.model.potential import Potential


class EqV2Calculator(Calculator):
    """Energy, free energy and forces (and stress) from an eqv2 `Potential`.

    Args:
        model_or_path: a `Potential` or a checkpoint path (eqv2 or fairchem).
        device, dtype: where and in which precision to run (a path is loaded there).
        use_ema: with a fairchem path, use its EMA weights.

    ASE calls ``calculate`` only when positions, numbers, cell or pbc changed, so the graph is
    rebuilt exactly then. Forces are the model's (constraints are applied by ASE itself when
    ``atoms.get_forces()`` is called). Elements the model does not know raise a ValueError
    naming the atom and the element.

    ``stress`` is implemented when the model has a stress head (OMat24, DeNS) or conservative
    forces (its strain derivative): eV/Å³, ASE's sign (positive under tension), Voigt order
    xx, yy, zz, yz, xz, xy, the same numbers as ``Potential.predict(..., stress=True)``. A
    direct-force model without a stress head does not list it (its energy's strain derivative
    is not consistent with its forces).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model_or_path: Potential | str | os.PathLike,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        use_ema: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model_or_path, Potential):
            self.potential = model_or_path.to(device=device, dtype=dtype or model_or_path.dtype)
        else:
            self.potential = load_model(model_or_path, dtype=dtype, device=device, use_ema=use_ema)
        self.potential.eval()
        # per instance: whether stress exists depends on the model
        self.implemented_properties = ["energy", "free_energy", "forces"] + (
            ["stress"] if self.potential.can_compute_stress else []
        )

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        result = self.potential.predict(self.atoms, stress="stress" in properties)
        self.results["energy"] = result["energy"]
        self.results["free_energy"] = result["energy"]
        self.results["forces"] = np.asarray(result["forces"])
        if "stress" in result:
            s = result["stress"]  # ASE wants Voigt order xx, yy, zz, yz, xz, xy
            self.results["stress"] = np.array(
                [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
            )


def load_calculator(path: str | os.PathLike, **kwargs) -> EqV2Calculator:
    """One line from a checkpoint to an ASE calculator: ``atoms.calc = load_calculator(p)``."""
    return EqV2Calculator(path, **kwargs)
