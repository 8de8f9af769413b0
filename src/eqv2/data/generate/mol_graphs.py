"""Random small CHONF molecule graphs (QM9-like: at most 9 heavy atoms), as canonical SMILES.

A graph grows one heavy atom at a time: each new atom (C, N, O or F, drawn with
``element_weights``) bonds to a random existing atom with free valence, by a single, double or
triple bond that both valences allow; then up to two ring closures join atoms 2 to 5 bonds
apart (3- to 6-membered rings, as QM9 has). Hydrogens fill the remaining valences (RDKit's
implicit hydrogens), so every molecule is neutral and closed-shell. O-O bonds and F bonded to
anything but C are never drawn. RDKit sanitises each graph
(aromaticity perception, valence checks); graphs it rejects are counted, never kept.

Only ``numpy``'s ``Generator`` passed in draws the choices, so a seed fixes the sequence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["HEAVY_VALENCE", "random_smiles"]

#: Heavy elements QM9 contains and their usual valence in neutral closed-shell molecules.
HEAVY_VALENCE: dict[str, int] = {"C": 4, "N": 3, "O": 2, "F": 1}
_Z = {"C": 6, "N": 7, "O": 8, "F": 9}
#: Bonds between two heteroatoms that GDB-style enumerations (QM9's source) leave out as
#: unstable: peroxides, and fluorine on anything but carbon. N-N and N-O bonds stay.
_FORBIDDEN = {frozenset(p) for p in (("O", "O"), ("O", "F"), ("N", "F"), ("F", "F"))}
_BOND_P = np.array([0.75, 0.2, 0.05])  # single, double, triple before valence limits
_RING_CLOSURES_P = np.array([0.45, 0.4, 0.15])  # 0, 1 or 2 ring closures


def _free(rw: Any, i: int, valence: dict[int, int]) -> int:
    atom = rw.GetAtomWithIdx(i)
    used = sum(int(b.GetBondTypeAsDouble()) for b in atom.GetBonds())
    return valence[i] - used


def _order(rng: np.random.Generator, limit: int) -> int:
    p = _BOND_P[:limit] / _BOND_P[:limit].sum()
    return int(rng.choice(limit, p=p)) + 1


def random_smiles(
    rng: np.random.Generator,
    n_heavy: int,
    element_weights: Mapping[str, float],
) -> str | None:
    """One random molecule with ``n_heavy`` heavy atoms as canonical SMILES, or ``None``.

    ``None`` means the drawn graph is not a valid molecule (RDKit's sanitisation failed or no
    atom had a free valence left to grow on); the caller counts it and draws again.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # rejected graphs are counted by the caller, not logged
    bond_type = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    symbols = list(element_weights)
    w = np.array([element_weights[s] for s in symbols], dtype=np.float64)
    w = w / w.sum()
    rw = Chem.RWMol()
    valence: dict[int, int] = {}

    def allowed(i: int, symbol: str) -> bool:
        return frozenset((rw.GetAtomWithIdx(i).GetSymbol(), symbol)) not in _FORBIDDEN

    def add(symbol: str) -> int:
        idx = rw.AddAtom(Chem.Atom(_Z[symbol]))
        valence[idx] = HEAVY_VALENCE[symbol]
        return idx

    # The first atom must take a bond when more atoms follow, so it is never F then.
    first = [s for s in symbols if n_heavy == 1 or HEAVY_VALENCE[s] > 1]
    wf = np.array([element_weights[s] for s in first])
    add(first[int(rng.choice(len(first), p=wf / wf.sum()))])
    for _ in range(n_heavy - 1):
        symbol = symbols[int(rng.choice(len(symbols), p=w))]
        hosts = [
            i for i in range(rw.GetNumAtoms()) if _free(rw, i, valence) > 0 and allowed(i, symbol)
        ]
        if not hosts:
            return None
        host = hosts[int(rng.integers(len(hosts)))]
        limit = min(_free(rw, host, valence), HEAVY_VALENCE[symbol], 3)
        new = add(symbol)
        rw.AddBond(host, new, bond_type[_order(rng, limit)])
    n_rings = int(rng.choice(3, p=_RING_CLOSURES_P))
    for _ in range(n_rings):
        dist = Chem.GetDistanceMatrix(rw, force=True)  # not the cached one: bonds changed
        pairs = [
            (i, j)
            for i in range(rw.GetNumAtoms())
            for j in range(i + 1, rw.GetNumAtoms())
            if 2 <= dist[i, j] <= 5
            and rw.GetBondBetweenAtoms(i, j) is None
            and _free(rw, i, valence) > 0
            and _free(rw, j, valence) > 0
            and allowed(i, rw.GetAtomWithIdx(j).GetSymbol())
        ]
        if not pairs:
            break
        i, j = pairs[int(rng.integers(len(pairs)))]
        limit = min(_free(rw, i, valence), _free(rw, j, valence), 2)
        rw.AddBond(i, j, bond_type[_order(rng, limit)])
    mol = rw.GetMol()
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # noqa: BLE001 - RDKit raises several sanitisation error types
        return None
    return Chem.MolToSmiles(mol)
