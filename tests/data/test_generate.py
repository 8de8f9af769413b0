"""Tests for the EMT-labelled OC20-like generator (eqv2.data.generate)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.io import read

from eqv2.data.generate import (
    EMT_ADSORBATE_ELEMENTS,
    EMT_METALS,
    FACETS,
    GeneratedDataset,
    emt_lattice_constant,
    generate_dataset,
    write_dataset,
)

# Small but covering: 5 systems (so every split is non-empty), short relaxations.
SMALL = dict(relax_steps=8, rattle_frames=2, alloy_fraction=0.5)


@pytest.fixture(scope="module")
def ds() -> GeneratedDataset:
    return generate_dataset(5, seed=3, **SMALL)


def _fixed_indices(atoms) -> np.ndarray:
    idx = [c.get_indices() for c in atoms.constraints]
    return np.sort(np.concatenate(idx)) if idx else np.array([], dtype=int)


def _assert_same(a: GeneratedDataset, b: GeneratedDataset) -> None:
    fa, fb = a.s2ef_frames, b.s2ef_frames
    assert len(fa) == len(fb)
    for x, y in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(x.numbers, y.numbers)
        np.testing.assert_array_equal(x.positions, y.positions)
        np.testing.assert_array_equal(x.cell.array, y.cell.array)
        assert x.get_potential_energy() == y.get_potential_energy()
        np.testing.assert_array_equal(
            x.get_forces(apply_constraint=False), y.get_forces(apply_constraint=False)
        )
        assert x.info == y.info


def test_same_seed_is_bit_identical_and_other_seed_differs(ds: GeneratedDataset) -> None:
    _assert_same(ds, generate_dataset(5, seed=3, **SMALL))
    other = generate_dataset(2, seed=4, **SMALL)
    assert any(
        len(x) != len(y) or not np.array_equal(x.positions, y.positions)
        for x, y in zip(ds.s2ef_frames, other.s2ef_frames, strict=False)
    )


def test_system_k_does_not_depend_on_n_systems(ds: GeneratedDataset) -> None:
    prefix = generate_dataset(2, seed=3, **SMALL)
    _assert_same(prefix, GeneratedDataset(ds.seed, ds.config, ds.systems[:2]))


def test_tags_fixed_atoms_and_elements(ds: GeneratedDataset) -> None:
    for system in ds.systems:
        n_ads = sum(1 for s in system.frames[0].get_chemical_symbols() if s in "CHNO")
        for frame in system.frames:
            tags = frame.get_tags()
            symbols = np.array(frame.get_chemical_symbols())
            assert set(np.unique(tags)) == {0, 1, 2}
            # tag 0 atoms are exactly the fixed ones
            np.testing.assert_array_equal(_fixed_indices(frame), np.flatnonzero(tags == 0))
            # tag 2 atoms are the adsorbate, made of H/C/N/O; the slab is metal
            assert np.sum(tags == 2) == n_ads
            assert set(symbols[tags == 2]) <= set(EMT_ADSORBATE_ELEMENTS)
            assert set(symbols[tags != 2]) <= set(ds.config.metals)
            # the top slab atom is a free surface atom; fixed atoms lie below the free ones
            slab_z = np.where(tags == 2, -np.inf, frame.positions[:, 2])
            assert tags[np.argmax(slab_z)] == 1
            assert frame.positions[tags == 0, 2].max() < frame.positions[tags == 1, 2].min()
        assert frame.info["adsorbate"] == system.frames[0][tags == 2].get_chemical_formula()


def test_frame_info(ds: GeneratedDataset) -> None:
    for system in ds.systems:
        for k, frame in enumerate(system.frames):
            info = frame.info
            assert info["system_id"] == system.system_id
            assert info["frame"] == k
            assert info["kind"] == ("relax" if k < system.n_relax_frames else "rattle")
            assert info["facet"] in {f"({f})" for f in FACETS}
            assert info["bulk"].startswith(tuple(EMT_METALS))
            assert info["site"]
            assert isinstance(info["adsorbate"], str)


def test_labels_match_emt(ds: GeneratedDataset) -> None:
    system = ds.systems[0]
    for frame in (system.frames[1], system.frames[-1]):  # one relaxation, one rattled frame
        fresh = frame.copy()
        fresh.calc = EMT()
        assert fresh.get_potential_energy() == pytest.approx(
            frame.get_potential_energy(), abs=1e-10
        )
        np.testing.assert_allclose(
            fresh.get_forces(apply_constraint=False),
            frame.get_forces(apply_constraint=False),
            atol=1e-10,
        )


def test_relaxation_lowers_energy_and_stops_by_rule(ds: GeneratedDataset) -> None:
    fmax, steps = ds.config.fmax, ds.config.relax_steps
    for system in ds.systems:
        energies = [f.get_potential_energy() for f in system.relax_frames]
        assert energies[-1] < energies[0]
        assert len(energies) <= steps + 1
        last = system.relax_frames[-1]
        free = last.get_tags() != 0
        f_last = np.linalg.norm(last.get_forces(apply_constraint=False)[free], axis=1).max()
        assert f_last <= fmax or len(energies) == steps + 1
        assert system.converged == (f_last <= fmax)


def test_rattles_move_only_free_atoms(ds: GeneratedDataset) -> None:
    for system in ds.systems:
        rattles = system.frames[system.n_relax_frames :]
        assert len(rattles) == ds.config.rattle_frames
        for frame in rattles:
            source = system.frames[frame.info["source_frame"]]
            moved = np.linalg.norm(frame.positions - source.positions, axis=1) > 0
            np.testing.assert_array_equal(moved, frame.get_tags() != 0)


def test_is2re_is2rs_pairs(ds: GeneratedDataset) -> None:
    assert len(ds.is2re) == len(ds.systems) == len(ds.is2rs)
    for system, (initial, relaxed) in zip(ds.systems, ds.is2re, strict=True):
        np.testing.assert_array_equal(initial.positions, system.frames[0].positions)
        np.testing.assert_array_equal(relaxed.positions, system.relax_frames[-1].positions)
        np.testing.assert_array_equal(initial.arrays["pos_relaxed"], relaxed.positions)
        assert initial.info["energy_relaxed"] == relaxed.get_potential_energy()
        assert initial.info["kind"] == "initial" and relaxed.info["kind"] == "relaxed"


def test_alloys_and_every_facet() -> None:
    for facet in FACETS:
        ds = generate_dataset(
            1, seed=7, facets=(facet,), alloy_fraction=1.0, relax_steps=1, rattle_frames=0
        )
        (system,) = ds.systems
        assert system.facet == f"({facet})"
        slab = system.frames[0][system.frames[0].get_tags() != 2]
        assert len(set(slab.get_chemical_symbols())) == 2
        assert len(system.frames) <= 2


def test_lattice_constant_is_emt_minimum() -> None:
    from ase.build import bulk

    a = emt_lattice_constant("Cu")
    energies = []
    for x in (a - 0.01, a, a + 0.01):
        atoms = bulk("Cu", "fcc", a=x)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    assert energies[1] < energies[0] and energies[1] < energies[2]


def test_splits_by_system_are_disjoint_and_deterministic(ds: GeneratedDataset) -> None:
    splits = ds.split_ids()
    ids = [i for name in ("train", "val", "test") for i in splits[name]]
    assert sorted(ids) == [s.system_id for s in ds.systems]
    assert all(splits[name] for name in ("train", "val", "test"))
    assert splits == ds.split_ids()
    with pytest.raises(ValueError, match="cannot fill the splits"):
        GeneratedDataset(ds.seed, ds.config, ds.systems[:2]).split_ids()


def test_write_and_read_back(ds: GeneratedDataset, tmp_path) -> None:
    paths = write_dataset(ds, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())
    umask = os.umask(0)
    os.umask(umask)
    for path in paths.values():  # plain-file permissions, not mkstemp's private 0600
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    splits = ds.split_ids()
    by_id = {s.system_id: s for s in ds.systems}
    seen: dict[str, set[int]] = {}
    for name, ids in splits.items():
        images = read(tmp_path / f"{name}.extxyz", index=":")
        expected = ds.frames_of(ids)
        assert len(images) == len(expected)
        seen[name] = {int(a.info["system_id"]) for a in images}
        for got, want in zip(images, expected, strict=True):
            assert got.get_potential_energy() == pytest.approx(
                want.get_potential_energy(), abs=1e-9
            )
            np.testing.assert_allclose(
                got.get_forces(apply_constraint=False),
                want.get_forces(apply_constraint=False),
                atol=1e-7,
            )
            np.testing.assert_allclose(got.positions, want.positions, atol=1e-7)
            np.testing.assert_array_equal(got.get_tags(), want.get_tags())
            np.testing.assert_array_equal(_fixed_indices(got), _fixed_indices(want))
            np.testing.assert_allclose(got.cell.array, want.cell.array, atol=1e-9)
            np.testing.assert_array_equal(got.pbc, want.pbc)
            assert got.info["kind"] == want.info["kind"]
            assert got.info["facet"] == want.info["facet"]
        pairs = read(tmp_path / f"is2re_{name}.extxyz", index=":")
        assert len(pairs) == 2 * len(ids)
        for k, i in enumerate(ids):
            initial, relaxed = pairs[2 * k], pairs[2 * k + 1]
            assert initial.info["kind"] == "initial" and relaxed.info["kind"] == "relaxed"
            assert initial.info["energy_relaxed"] == pytest.approx(by_id[i].energy_relaxed)
            np.testing.assert_allclose(initial.arrays["pos_relaxed"], relaxed.positions, atol=1e-7)
    assert not (seen["test"] & (seen["train"] | seen["val"]))
    assert not (seen["train"] & seen["val"])
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["seed"] == 3
    assert meta["n_systems"] == 5
    assert "EMT" in meta["labels"] and "DFT" in meta["labels"]
    assert meta["splits"] == splits
    assert sum(c["frames"] for c in meta["counts"].values()) == len(ds.s2ef_frames)
    assert meta["parameters"]["relax_steps"] == 8


def test_written_files_are_deterministic(ds: GeneratedDataset, tmp_path) -> None:
    write_dataset(ds, tmp_path / "a")
    write_dataset(generate_dataset(5, seed=3, **SMALL), tmp_path / "b")
    for path in sorted((tmp_path / "a").iterdir()):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes(), path.name


def test_missing_adsorbate_file_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "nowhere.extxyz"
    with pytest.raises(FileNotFoundError, match="nowhere.extxyz"):
        generate_dataset(1, adsorbate_file=missing)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(metals=("Cu", "Fe")), r"metals: unknown value 'Fe'; allowed values are Ag, Al"),
        (dict(facets=("311",)), r"facets: unknown value '311'; allowed values are 111, 100"),
        (dict(adsorbates=("*XYZ",)), r"adsorbates: unknown adsorbate '\*XYZ'"),
        (dict(adsorbates=(500,)), r"adsorbates: adsorbate index 500 out of range"),
        (dict(layers=(2,), fix_bottom_layers=2), r"layers: 2 layers with fix_bottom_layers=2"),
        (dict(alloy_fraction=1.5), r"alloy_fraction must be in \[0, 1\]"),
        (dict(fmax=0.0), r"fmax must be > 0"),
        (dict(sizes=((0, 2),)), r"sizes"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        generate_dataset(1, **kwargs)


def test_invalid_counts() -> None:
    with pytest.raises(ValueError, match="n_systems"):
        generate_dataset(0)
    with pytest.raises(ValueError, match="seed"):
        generate_dataset(1, seed=-1)


def test_explicit_adsorbates_by_smiles_and_index() -> None:
    ds = generate_dataset(2, seed=0, adsorbates=("*CO", 0), relax_steps=1, rattle_frames=0)
    assert {s.adsorbate_smiles for s in ds.systems} <= {"*CO", "*O"}
