"""torch-sim for eqv2 (extra ``eqv2[torchsim]``): batched MD and relaxation of many systems.

- `EqV2TorchSimModel`: an eqv2 potential as a torch-sim ``ModelInterface``.
- `run_md_batch`: NVE / Langevin NVT / Langevin NPT of many structures with `eqv2 md`'s
  outputs (``eqv2 md --engine torchsim`` on the command line).
- `relax_batch`: FIRE relaxations through torch-sim's ``InFlightAutoBatcher``.

Needs ``pip install 'eqv2[torchsim]'`` (the package ``torch-sim-atomistic``).
"""

try:
    import torch_sim  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "eqv2.simulate.torchsim needs torch-sim: pip install 'eqv2[torchsim]' (the package "
        "torch-sim-atomistic 0.3, for Python >= 3.11)."
    ) from exc

from eqv2.simulate.torchsim.md import (
    TORCHSIM_ENSEMBLES,
    initial_momenta,
    run_md_batch,
    run_md_torchsim,
)
from eqv2.simulate.torchsim.model import EqV2TorchSimModel, structures_from_state
from eqv2.simulate.torchsim.relax import relax_batch
from eqv2.simulate.torchsim.state import check_structures, state_from_atoms

__all__ = [
    "TORCHSIM_ENSEMBLES",
    "EqV2TorchSimModel",
    "check_structures",
    "initial_momenta",
    "relax_batch",
    "run_md_batch",
    "run_md_torchsim",
    "state_from_atoms",
    "structures_from_state",
]
