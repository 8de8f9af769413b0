"""Output heads: modules that turn the backbone's node features into predictions.

Each head takes the final node features ``x (N, (lmax+1)², C)`` and a :class:`HeadInputs`
and returns a dict of raw (normalised-space) outputs. Parameter names follow fairchem's head
modules so a fairchem file maps onto them by renaming prefixes (``eqv2.model.heads``).

* :class:`EnergyHead`: per-atom scalar summed (or averaged) per structure (fairchem's
  ``EquiformerV2EnergyHead`` and ``DeNSScalarHead``);
* :class:`ForceHead`, :class:`DeNSForceHead`: direct forces from one attention block
  (``EquiformerV2ForceHead``, ``DeNSVectorHead``);
* :class:`Rank2Head`: symmetric rank-2 tensors such as the stress
  (``Rank2SymmetricTensorHead``, ``DeNSRank2Head``);
* :class:`PositionDenoisingHead`: the Noisy Nodes noise prediction (eqv2's own).
"""

from eqv2.nn.heads.denoising import PositionDenoisingHead
from eqv2.nn.heads.energy import EnergyHead
from eqv2.nn.heads.forces import DeNSForceHead, ForceHead
from eqv2.nn.heads.inputs import HeadInputs
from eqv2.nn.heads.rank2 import Rank2Head

__all__ = [
    "DeNSForceHead",
    "EnergyHead",
    "ForceHead",
    "HeadInputs",
    "PositionDenoisingHead",
    "Rank2Head",
]
