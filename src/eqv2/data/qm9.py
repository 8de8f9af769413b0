"""QM9 as users have it: schnetpack's ASE database (and its extxyz twin), with a unit table.

QM9 (Ramakrishnan et al., Sci. Data 1, 140022 (2014)) gives 12 regression targets per molecule.
Papers (Equiformer, EquiformerV2 Table 5) report them in mixed units; schnetpack's
``QM9`` database stores them in ASE units (eV, e·Å, Å³, Å²) under its own key names, in
``row.data``. :func:`read_qm9` reads that layout and returns :class:`Structure` records whose
``targets`` hold the 12 properties under the stable eqv2 names of :data:`QM9_TARGETS`, in the
paper's units:

========  ==========  ================================  =========  ===========
name      symbol      schnetpack key (stored unit)      unit       readout
========  ==========  ================================  =========  ===========
mu        μ           dipole_moment (e·Å)               D          mean
alpha     α           isotropic_polarizability (Å³)     a₀³        sum
homo      ε_HOMO      homo (eV)                         meV        mean
lumo      ε_LUMO      lumo (eV)                         meV        mean
gap       Δε          gap (eV)                          meV        mean
r2        ⟨R²⟩        electronic_spatial_extent (Å²)    a₀²        sum
zpve      ZPVE        zpve (eV)                         meV        sum
u0        U₀          energy_U0 (eV)                    meV        sum
u         U           energy_U (eV)                     meV        sum
h         H           enthalpy_H (eV)                   meV        sum
g         G           free_energy (eV)                  meV        sum
cv        c_v         heat_capacity (cal/mol/K)         cal/mol K  sum
========  ==========  ================================  =========  ===========

The factors use ASE's constants (``ase.units.Bohr``, ``ase.units.Debye``), the ones schnetpack
used to convert QM9's Hartree/Bohr/Debye values, so the conversion inverts schnetpack's exactly
(up to floating point). ``readout`` is a hint for a per-structure head: ``sum`` over atoms for
size-extensive properties, ``mean`` for intensive ones. ``U0``/``U``/``H``/``G`` are total
energies (not atomization energies): fit per-element references when training on them.

A schnetpack database has no unit metadata (``db.metadata`` is empty); the units above are
schnetpack's documented conversion, checked against QM9's raw values (``tests/data/test_qm9.py``).
Records already in eqv2's layout (the names above, e.g. written by :func:`write_qm9` or the
molecule generator) are read as they are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase.units import Bohr, Debye

from eqv2.data._common import Index, check_path, select
from eqv2.data.errors import DataError, where
from eqv2.data.records import Structure, from_atoms

__all__ = [
    "QM9_TARGETS",
    "QM9Target",
    "iter_qm9",
    "qm9_target",
    "qm9_units",
    "read_qm9",
    "write_qm9",
]


@dataclass(frozen=True)
class QM9Target:
    """One QM9 property: its eqv2 name, unit and where schnetpack stores it."""

    name: str
    symbol: str
    description: str
    unit: str
    #: schnetpack's key (in ``row.data`` / extxyz ``info``) and the unit it is stored in.
    key: str
    stored_unit: str
    #: value in ``unit`` = stored value × ``factor``.
    factor: float
    #: ``"sum"`` (size-extensive) or ``"mean"`` (intensive): a readout hint for heads.
    readout: str


_MEV = 1000.0  # eV -> meV

#: The 12 QM9 targets in the order of the paper's Table 5.
QM9_TARGETS: tuple[QM9Target, ...] = (
    QM9Target("mu", "μ", "dipole moment", "D", "dipole_moment", "e*Ang", 1.0 / Debye, "mean"),
    QM9Target(
        "alpha",
        "α",
        "isotropic polarizability",
        "a0^3",
        "isotropic_polarizability",
        "Ang^3",
        1.0 / Bohr**3,
        "sum",
    ),
    QM9Target("homo", "ε_HOMO", "HOMO energy", "meV", "homo", "eV", _MEV, "mean"),
    QM9Target("lumo", "ε_LUMO", "LUMO energy", "meV", "lumo", "eV", _MEV, "mean"),
    QM9Target("gap", "Δε", "HOMO-LUMO gap", "meV", "gap", "eV", _MEV, "mean"),
    QM9Target(
        "r2",
        "⟨R²⟩",
        "electronic spatial extent",
        "a0^2",
        "electronic_spatial_extent",
        "Ang^2",
        1.0 / Bohr**2,
        "sum",
    ),
    QM9Target("zpve", "ZPVE", "zero-point vibrational energy", "meV", "zpve", "eV", _MEV, "sum"),
    QM9Target("u0", "U₀", "internal energy at 0 K", "meV", "energy_U0", "eV", _MEV, "sum"),
    QM9Target("u", "U", "internal energy at 298.15 K", "meV", "energy_U", "eV", _MEV, "sum"),
    QM9Target("h", "H", "enthalpy at 298.15 K", "meV", "enthalpy_H", "eV", _MEV, "sum"),
    QM9Target("g", "G", "free energy at 298.15 K", "meV", "free_energy", "eV", _MEV, "sum"),
    QM9Target(
        "cv",
        "c_v",
        "heat capacity at 298.15 K",
        "cal/mol/K",
        "heat_capacity",
        "cal/mol/K",
        1.0,
        "sum",
    ),
)

_BY_NAME = {t.name: t for t in QM9_TARGETS}


def qm9_target(name: str) -> QM9Target:
    """The :class:`QM9Target` called ``name`` (e.g. ``"gap"``).

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown QM9 target {name!r}; known: {', '.join(_BY_NAME)}") from None


def qm9_units() -> dict[str, str]:
    """``{name: unit}`` for the 12 targets, e.g. ``{"gap": "meV", ...}``."""
    return {t.name: t.unit for t in QM9_TARGETS}


def _names(names: Sequence[str] | None) -> tuple[QM9Target, ...]:
    if names is None:
        return QM9_TARGETS
    out = []
    for n in names:
        try:
            out.append(qm9_target(n))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
    return tuple(out)


def _results(atoms: Any) -> dict[str, Any]:
    # ASE's extxyz reader moves keys that name calculator properties (free_energy) there.
    return (getattr(atoms.calc, "results", None) or {}) if atoms.calc is not None else {}


def _layout(atoms: Any, label: str, wanted: tuple[QM9Target, ...]) -> str:
    """``"schnetpack"`` or ``"eqv2"``: which key set the record uses (all of ``wanted``)."""
    results = _results(atoms)

    def has(key: str) -> bool:
        return key in atoms.info or key in results

    for layout, keys in (
        ("schnetpack", [t.key for t in wanted]),
        ("eqv2", [t.name for t in wanted]),
    ):
        if all(has(k) for k in keys):
            return layout
    # Name the first missing key of the layout the record resembles more.
    sp = [t.key for t in wanted if not has(t.key)]
    eq = [t.name for t in wanted if not has(t.name)]
    layout, missing = ("schnetpack", sp) if len(sp) <= len(eq) else ("eqv2", eq)
    raise DataError(
        f"{label}: QM9 property {missing[0]!r} is missing ({layout} layout; "
        f"{len(missing)} of {len(wanted)} keys absent). Fix: read a QM9 file whose records "
        "all carry the properties, or ask only for the targets present (names=[...])."
    )


def _convert(atoms: Any, source: str, index: int, wanted: tuple[QM9Target, ...]) -> Structure:
    label = where(source, index)
    layout = _layout(atoms, label, wanted)
    results = _results(atoms)
    targets: dict[str, float] = {}
    for t in wanted:
        key = t.key if layout == "schnetpack" else t.name
        raw = atoms.info[key] if key in atoms.info else results[key]
        try:
            value = float(np.asarray(raw, dtype=np.float64).reshape(-1)[0])
        except (TypeError, ValueError, IndexError):
            raise DataError(
                f"{label}: QM9 property {key!r} is {raw!r}, not a number. Fix: store one "
                "number per molecule."
            ) from None
        targets[t.name] = value * t.factor if layout == "schnetpack" else value
    # Drop every QM9 key of the layout so none stays behind (in info) under its old unit.
    for t in QM9_TARGETS:
        key = t.key if layout == "schnetpack" else t.name
        atoms.info.pop(key, None)
        results.pop(key, None)
    s = from_atoms(atoms, source=source, index=index)
    s.targets.update(targets)
    s.info["qm9_layout"] = layout
    return s.validate()


def iter_qm9(
    path: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    index: Index = ":",
) -> Iterator[Structure]:
    """Yield QM9 molecules from an ASE database (``.db``) or extxyz, targets in eqv2 units.

    Args:
        path: schnetpack's QM9 database (properties in ``row.data``), its extxyz export, or a
            file already in eqv2's layout (see the module docstring).
        names: which targets to return (default: all 12); only these must be present.
        index: which records (int, slice or ASE-style string such as ``"0:100"``).

    Raises:
        DataError: missing/unreadable file; a record lacking a requested property (naming the
            file, the record and the key) or holding a non-number.
        ValueError: an unknown target name.
    """
    wanted = _names(names)
    p = check_path(path)
    if p.suffix in (".db", ".aselmdb"):
        import ase.db

        from eqv2.data.ase_db import row_atoms

        try:
            db = ase.db.connect(str(p))
            ids = [row.id for row in db.select(include_data=False)]
        except Exception as exc:  # noqa: BLE001 - sqlite/json/lmdb errors differ by backend
            raise DataError(
                f"{p}: ASE could not open the database ({type(exc).__name__}: {exc}). "
                "Fix: check that it is an ASE database."
            ) from exc
        if index in (":", slice(None)):  # stream: one query, rows in id order
            for i, row in enumerate(db.select()):
                yield _convert(row_atoms(row), str(p), i, wanted)
            return
        for i in select(len(ids), index, p):
            yield _convert(row_atoms(db.get(id=ids[i])), str(p), i, wanted)
        return
    import ase.io

    try:
        if index in (":", slice(None)):
            for i, atoms in enumerate(ase.io.iread(p, index=":")):
                yield _convert(atoms, str(p), i, wanted)
            return
        frames = ase.io.read(p, index=":")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - ASE raises many types on bad files
        raise DataError(
            f"{p}: ASE could not read the file ({type(exc).__name__}: {exc}). Fix: give "
            "an extxyz file or an ASE database."
        ) from exc
    for i in select(len(frames), index, p):
        yield _convert(frames[i], str(p), i, wanted)


def read_qm9(
    path: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    index: Index = ":",
) -> list[Structure]:
    """All selected molecules of a QM9 file as a list (see :func:`iter_qm9`)."""
    return list(iter_qm9(path, names=names, index=index))


def write_qm9(structures: Sequence[Structure], path: str | os.PathLike[str]) -> Path:
    """Write QM9 records (eqv2 names and units in ``info``) to an extxyz file, atomically.

    The result trains directly (``eqv2 train ... --set data.target=gap``) and reads back with
    :func:`read_qm9` unchanged.
    """
    from ase.io import write as ase_write

    from eqv2.safe_io import atomic_write_path

    out = Path(path)
    if not structures:
        raise DataError(f"{out}: no structures to write. Fix: read at least one molecule.")
    with atomic_write_path(out) as tmp:
        ase_write(tmp, [s.to_atoms() for s in structures], format="extxyz")
    return out
