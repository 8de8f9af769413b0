"""Adsorbates on surfaces: the adsorbate list, surface atoms and sites, and placement.

One implementation shared by the OC20-like data generator (:mod:`eqv2.data.generate`) and
AdsorbML (:mod:`eqv2.simulate.adsorbml`): the same sites (:func:`find_sites`) and the same
placement rule (:func:`place_adsorbate`). Plain numpy/ASE geometry on ``ase.Atoms`` slabs
(surface normal +z); no model, no parameters.
"""

from eqv2.adsorption.adsorbates import (
    DEFAULT_ADSORBATE_FILE,
    binding_indices,
    load_adsorbates,
    select_adsorbate,
)
from eqv2.adsorption.placement import align_to_z, place_adsorbate, rotation_about
from eqv2.adsorption.sites import SITE_KINDS, Site, find_sites, surface_atoms

__all__ = [
    "DEFAULT_ADSORBATE_FILE",
    "SITE_KINDS",
    "Site",
    "align_to_z",
    "binding_indices",
    "find_sites",
    "load_adsorbates",
    "place_adsorbate",
    "rotation_about",
    "select_adsorbate",
    "surface_atoms",
]
