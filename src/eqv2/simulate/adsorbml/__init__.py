"""AdsorbML (Lan et al. 2023): find the lowest-energy adsorbate configuration with an ML
potential, then verify the best few with a reference calculator.

``run_adsorbml(slab, "*OH", model_relaxer(potential), EMT())`` places the adsorbate on every
distinct site plus random positions, relaxes all placements in batches with the model, drops
desorbed / dissociated / surface-changing / intercalated results, ranks the rest by ML energy and
checks the top k with single points (ML+SP) or relaxations (ML+RX) of the reference, reporting
success (within 0.1 eV of the reference minimum, or lower) and speed-up for k = 1..top_k.
See docs/adsorbml.md.
"""

from eqv2.adsorption import Site, find_sites, surface_atoms
from eqv2.simulate.adsorbml.inputs import check_slab, resolve_adsorbate
from eqv2.simulate.adsorbml.placement import generate_placements, min_contact_ratio
from eqv2.simulate.adsorbml.records import Outcome
from eqv2.simulate.adsorbml.relaxers import (
    ase_relaxer,
    calls_of,
    model_relaxer,
    single_points,
)
from eqv2.simulate.adsorbml.report import (
    SUCCESS_THRESHOLD,
    TopK,
    aggregate,
    format_table,
    top_k_rows,
)
from eqv2.simulate.adsorbml.screening import (
    STRATEGIES,
    AdsorbMLResult,
    AdsorbMLSettings,
    Baseline,
    Candidate,
    run_adsorbml,
)
from eqv2.simulate.adsorbml.validity import Validity, check_validity

__all__ = [
    "STRATEGIES",
    "SUCCESS_THRESHOLD",
    "AdsorbMLResult",
    "AdsorbMLSettings",
    "Baseline",
    "Candidate",
    "Outcome",
    "Site",
    "TopK",
    "Validity",
    "aggregate",
    "ase_relaxer",
    "calls_of",
    "check_slab",
    "check_validity",
    "find_sites",
    "format_table",
    "generate_placements",
    "min_contact_ratio",
    "model_relaxer",
    "resolve_adsorbate",
    "run_adsorbml",
    "single_points",
    "surface_atoms",
    "top_k_rows",
]
