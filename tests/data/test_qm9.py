"""QM9 reader: unit conversions against QM9's raw values, both layouts, round trip, bad input."""

from __future__ import annotations

from pathlib import Path

import ase.db
import ase.io
import pytest
from ase import Atoms

from eqv2.data import DataError
from eqv2.data.qm9 import QM9_TARGETS, qm9_target, qm9_units, read_qm9, write_qm9

from ..conftest import SHARED

MOLECULES = SHARED / "data" / "molecules"
HARTREE_MEV = 27211.386245988  # CODATA 2018; QM9's raw values carry 4-6 digits, far coarser

# QM9's raw record of NH3 (gdb_2.xyz, Ramakrishnan et al. 2014), in its native units:
# mu (D), alpha (a0^3), homo/lumo/gap (Ha), r2 (a0^2), zpve/U0/U/H/G (Ha), cv (cal/mol K).
NH3_RAW = {
    "mu": (1.6256, 1.0),
    "alpha": (9.46, 1.0),
    "homo": (-0.257, HARTREE_MEV),
    "lumo": (0.0829, HARTREE_MEV),
    "gap": (0.3399, HARTREE_MEV),
    "r2": (26.1563, 1.0),
    "zpve": (0.034358, HARTREE_MEV),
    "u0": (-56.525887, HARTREE_MEV),
    "u": (-56.523026, HARTREE_MEV),
    "h": (-56.522082, HARTREE_MEV),
    "g": (-56.544961, HARTREE_MEV),
    "cv": (6.316, 1.0),
}


def _shared(name: str) -> Path:
    p = MOLECULES / name
    if not p.exists():
        pytest.skip(f"shared data not found at {p} (place ../shared beside the repo)")
    return p


def test_unit_table_is_the_papers() -> None:
    assert qm9_units() == {
        "mu": "D",
        "alpha": "a0^3",
        "homo": "meV",
        "lumo": "meV",
        "gap": "meV",
        "r2": "a0^2",
        "zpve": "meV",
        "u0": "meV",
        "u": "meV",
        "h": "meV",
        "g": "meV",
        "cv": "cal/mol/K",
    }
    assert len({t.key for t in QM9_TARGETS}) == 12
    with pytest.raises(KeyError, match="known: mu, alpha"):
        qm9_target("U0")


@pytest.mark.parametrize("name", list(NH3_RAW))
@pytest.mark.parametrize("fmt", ["qm9_subset_schnetpack_19.db", "qm9_subset_schnetpack_19.extxyz"])
def test_each_conversion_matches_the_raw_qm9_value(fmt: str, name: str) -> None:
    """schnetpack stored NH3 in eV/e·Å/Å; converted back it must equal QM9's own numbers."""
    (nh3,) = read_qm9(_shared(fmt), index="1:2")
    assert nh3.formula() == "H3N"
    raw, to_unit = NH3_RAW[name]
    expected = raw * to_unit
    # Agreement to the last digit QM9 printed (its raw values are rounded, ours are exact).
    digits = len(str(abs(raw)).split(".")[1])
    tol = 0.5 * 10.0**-digits * to_unit * 1.01 + 1e-9
    assert abs(nh3.targets[name] - expected) <= tol, (name, nh3.targets[name], expected)


def test_dipole_factor_by_hand() -> None:
    # 1 D = 0.2081943 e·Å (ASE's Debye), so 0.338440710 e·Å is 1.62560 D.
    t = qm9_target("mu")
    assert t.factor * 0.3384407100406716 == pytest.approx(1.6256, abs=2e-6)
    assert qm9_target("alpha").factor == pytest.approx(1 / 0.529177210903**3, rel=1e-6)
    assert qm9_target("gap").factor == 1000.0


def test_db_and_extxyz_agree_and_every_molecule_has_12_targets() -> None:
    db = read_qm9(_shared("qm9_subset_schnetpack_19.db"))
    xyz = read_qm9(_shared("qm9_subset_schnetpack_19.extxyz"))
    assert len(db) == len(xyz) == 19
    for a, b in zip(db, xyz, strict=True):
        assert set(a.targets) == {t.name for t in QM9_TARGETS}
        assert a.targets == pytest.approx(b.targets, rel=1e-12)
        assert a.energy is None and a.forces is None
        # No schnetpack key is left behind in info under its old unit.
        assert not {t.key for t in QM9_TARGETS} & set(a.info)
        assert a.info["rotational_constant_A"] == b.info["rotational_constant_A"]


def test_subset_of_names() -> None:
    (ch4,) = read_qm9(_shared("qm9_subset_schnetpack_19.db"), index=0, names=["gap", "u0"])
    assert set(ch4.targets) == {"gap", "u0"}
    assert ch4.targets["gap"] == pytest.approx(0.5048 * HARTREE_MEV, abs=0.00005 * HARTREE_MEV)
    with pytest.raises(ValueError, match="unknown QM9 target 'Gap'"):
        read_qm9(_shared("qm9_subset_schnetpack_19.db"), names=["Gap"])


def test_write_then_read_is_the_identity(tmp_path: Path) -> None:
    mols = read_qm9(_shared("qm9_subset_schnetpack_19.db"))
    out = write_qm9(mols, tmp_path / "qm9.extxyz")
    back = read_qm9(out)
    assert [m.info["qm9_layout"] for m in back] == ["eqv2"] * 19
    for a, b in zip(mols, back, strict=True):
        assert a.targets == pytest.approx(b.targets, rel=1e-12)
        assert a.positions == pytest.approx(b.positions, abs=1e-7)  # extxyz prints 8 decimals


def test_missing_property_names_record_and_key(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    with ase.db.connect(str(path)) as db:
        good = {t.key: 1.0 for t in QM9_TARGETS}
        db.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), data=good)
        bad = dict(good)
        del bad["gap"]
        db.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), data=bad)
    with pytest.raises(DataError, match=r"broken\.db, structure 1.*'gap' is missing"):
        read_qm9(path)
    assert len(read_qm9(path, names=["mu"])) == 2  # only the asked-for keys must be present


def test_non_number_and_bad_files(tmp_path: Path) -> None:
    with ase.db.connect(str(tmp_path / "x.db")) as db:
        values = {t.name: 1.0 for t in QM9_TARGETS}
        values["gap"] = "n/a"
        db.write(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), **values)
    with pytest.raises(DataError, match=r"x\.db, structure 0.*'gap' is 'n/a'"):
        read_qm9(tmp_path / "x.db")
    with pytest.raises(DataError):
        read_qm9(tmp_path / "absent.db")
    (tmp_path / "garbage.extxyz").write_text("not an xyz\n")
    with pytest.raises(DataError, match="garbage"):
        read_qm9(tmp_path / "garbage.extxyz")
    with pytest.raises(DataError, match="no structures"):
        write_qm9([], tmp_path / "empty.extxyz")


@pytest.mark.parametrize("name", ["qm9.yaml", "qm9_cpu.yaml"])
def test_configs_declare_the_unit_table(name: str) -> None:
    """The configs' outputs read each QM9 target in the unit of the table, with its readout."""
    import yaml

    from eqv2.model.config import EquiformerV2Config

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / name).read_text())
    EquiformerV2Config.from_dict(cfg["model"])  # every model key is a real hyper-parameter
    units = qm9_units()
    assert cfg["outputs"] and set(cfg["outputs"]) == set(cfg["loss"])
    for target, spec in cfg["outputs"].items():
        assert spec["unit"] == units[target] and spec["key"] == target
        assert spec["extensive"] == (qm9_target(target).readout == "sum")
    if name == "qm9.yaml":
        assert set(cfg["outputs"]) == set(units)
