"""eqv2.graph: neighbour lists with periodic boundaries and batching of :class:`Structure` records.

Layer 2 of eqv2 (imports only numpy, torch, ase and vesin). Edges are ``(source j, target i)``
with messages flowing j → i and ``edge_vec = pos[j] - pos[i] + cell_offsets @ cell``.
"""

from eqv2.graph.batch import as_structure, batch_structures, fixed_mask, merge_graphs
from eqv2.graph.cells import check_cell
from eqv2.graph.edges import edge_vectors
from eqv2.graph.errors import DataError
from eqv2.graph.neighbors import NeighborList, radius_graph
from eqv2.graph.structure import Structure, from_atoms, to_atoms
from eqv2.graph.validate import MIN_ATOM_DISTANCE, structure_label, validate_structure

__all__ = [
    "DataError",
    "MIN_ATOM_DISTANCE",
    "Structure",
    "as_structure",
    "from_atoms",
    "to_atoms",
    "NeighborList",
    "batch_structures",
    "check_cell",
    "edge_vectors",
    "fixed_mask",
    "merge_graphs",
    "radius_graph",
    "structure_label",
    "validate_structure",
]
