from types import SimpleNamespace

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import read, write

from eqv2.simulate import relax_evaluation
from eqv2.simulate.relax_evaluation import format_relax_metrics, score_relaxations
from eqv2.simulate.relax_records import (
    Prediction,
    predictions_from_images,
    predictions_from_results,
    read_relax_file,
    split_relax_images,
)


def _slab(energy: float | None = None, system_id: int | None = None, **info) -> Atoms:
    """Four atoms in a 4 x 4 x 12 Å cell, pbc (T, T, F); atoms 0-1 fixed (tag 0)."""
    atoms = Atoms(
        "Cu2OH",
        positions=[[0.5, 0.5, 1.0], [2.5, 2.5, 1.0], [3.95, 1.0, 3.0], [1.0, 1.0, 4.0]],
        cell=[4.0, 4.0, 12.0],
        pbc=[True, True, False],
        tags=[0, 0, 2, 2],
    )
    atoms.set_constraint(FixAtoms(indices=[0, 1]))
    if energy is not None:
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
    if system_id is not None:
        atoms.info["system_id"] = system_id
    atoms.info.update(info)
    return atoms


def _moved(atoms: Atoms, shift: dict[int, tuple[float, float, float]], energy: float) -> Atoms:
    out = atoms.copy()
    for i, d in shift.items():
        out.positions[i] += d
    out.calc = SinglePointCalculator(out, energy=energy)
    return out


def test_known_metrics_with_a_boundary_crossing_fixed_atoms_and_a_failure():
    refs = [_slab(-10.0), _slab(-20.0), _slab(-30.0)]
    preds = [
        # O crosses the periodic x face (3.95 -> 4.05): 0.1 Å; H 0.3104 Å; fixed Cu 1.5 Å
        Prediction(
            _moved(refs[0], {2: (0.1, 0, 0), 3: (0, 0.3104, 0), 0: (0, 0, 1.5)}, -10.01), -10.01
        ),
        Prediction(_moved(refs[1], {2: (0, 0, 0.2052), 3: (0, 0, 0.2052)}, -20.5), -20.5, True, 12),
        Prediction(None, None, False, 3, error="NaN forces from the model"),
    ]
    preds[0].atoms.positions[2, 0] -= 4.0  # wrapped back into the cell: same image
    m = score_relaxations(preds, refs)
    assert m["n_structures"] == 3 and m["n_evaluated"] == 2 and m["n_converged"] == 1
    assert m["is2re"]["energy_mae"] == pytest.approx((0.01 + 0.5) / 2)
    assert m["is2re"]["energy_ewt"] == pytest.approx(0.5)
    assert [r.get("mean_distance") for r in m["structures"]] == pytest.approx(
        [0.2052, 0.2052, None]
    )
    assert m["is2rs"]["mean_distance"] == pytest.approx(0.2052)
    assert m["is2rs"]["adwt"] == pytest.approx(294 / 490)  # 0.2052 < t for t = 0.206 .. 0.499
    assert m["failures"] == [{"index": 2, "formula": "HCu2O", "error": "NaN forces from the model"}]
    table = format_relax_metrics(m)
    assert "1 failed" in table and "NaN forces" in table
    # counting all atoms brings the fixed Cu in
    m_all = score_relaxations(preds, refs, free_only=False)
    assert m_all["structures"][0]["mean_distance"] == pytest.approx((1.5 + 0.1 + 0.3104) / 4)


def test_fix_tags_exclude_atoms_without_constraints():
    ref = _slab(-1.0)
    ref.set_constraint()
    pred = _moved(ref, {0: (1.0, 0, 0), 2: (0.1, 0, 0)}, -1.0)
    m = score_relaxations([Prediction(pred, -1.0)], [ref], fix_tags=[0])
    assert m["structures"][0]["mean_distance"] == pytest.approx(0.05)
    m = score_relaxations([Prediction(pred, -1.0)], [ref])
    assert m["structures"][0]["mean_distance"] == pytest.approx(1.1 / 4)


def test_all_failed_gives_null_metrics():
    m = score_relaxations([Prediction(None, None, error="boom")], [_slab(-1.0)])
    assert m["is2re"]["energy_mae"] is None and m["is2rs"]["adwt"] is None
    assert "n/a" in format_relax_metrics(m)


@pytest.mark.parametrize(
    ("energy", "reason"),
    [(None, "no predicted energy"), (float("nan"), "non-finite predicted energy")],
)
def test_unusable_predictions_are_failures(energy, reason):
    m = score_relaxations([Prediction(_slab(), energy)], [_slab(-1.0)])
    assert m["failures"][0]["error"].startswith(reason)


def test_mismatched_structures_are_named():
    other = Atoms(
        "Cu2OH", positions=np.zeros((4, 3)) + [[0, 0, 0], [2, 0, 0], [0, 2, 0], [2, 2, 0]]
    )
    other.numbers[[2, 3]] = other.numbers[[3, 2]]
    with pytest.raises(ValueError, match=r"Structure 1 \(HCu2O\).*differ in their elements"):
        score_relaxations([Prediction(_slab(), 0.0), Prediction(other, 0.0)], [_slab(0.0)] * 2)
    with pytest.raises(ValueError, match=r"Structure 0 \(HCu2O\).*differ in their atoms"):
        score_relaxations([Prediction(Atoms("Cu"), 0.0)], [_slab(0.0)])
    with pytest.raises(ValueError, match="2 structures to compare but 1 reference"):
        score_relaxations([Prediction(_slab(), 0.0)] * 2, [_slab(0.0)])
    with pytest.raises(ValueError, match="system_id 4 but the reference of system_id 5"):
        score_relaxations([Prediction(_slab(system_id=4), 0.0)], [_slab(0.0, system_id=5)])
    with pytest.raises(ValueError, match=r"Structure 0 \(HCu2O\): the reference has no energy"):
        score_relaxations([Prediction(_slab(), 0.0)], [_slab()])


def test_no_free_atom_is_a_named_error():
    ref = _slab(0.0)
    ref.set_constraint(FixAtoms(indices=range(4)))
    with pytest.raises(ValueError, match=r"Structure 0 \(HCu2O\): every atom is fixed"):
        score_relaxations([Prediction(_slab(), 0.0)], [ref])


def test_generator_layout_round_trip(tmp_path):
    frames = []
    for sid in range(2):
        initial = _slab(-1.0, system_id=sid, kind="initial", energy_relaxed=-2.0 - sid)
        relaxed = _moved(initial, {3: (0, 0, 0.1)}, -2.0 - sid)
        relaxed.info["kind"] = "relaxed"
        frames += [initial, relaxed]
    path = tmp_path / "is2re.extxyz"
    write(path, frames, format="extxyz")
    task = read_relax_file(path)
    assert len(task.initial) == len(task.reference) == 2
    assert [a.get_potential_energy() for a in task.reference] == [-2.0, -3.0]
    np.testing.assert_allclose(task.reference[1].positions, frames[3].positions)
    assert task.reference[0].constraints  # move_mask comes back as FixAtoms

    # relaxing the whole file gives 4 frames; the relaxed-started ones are dropped
    preds = predictions_from_images(read(path, index=":"))
    assert len(preds) == 2 and preds[0].energy == -1.0

    with pytest.raises(ValueError, match=r"frame 2 .* info\['kind'\]='relaxed', expected 'ini"):
        split_relax_images([frames[0], frames[1], frames[1], frames[0]], "f.extxyz")
    # initial frames alone (no relaxed ones) are the structures to relax, not pairs
    alone = split_relax_images([frames[0], frames[2]], "f.extxyz")
    assert alone.initial is None and len(alone.reference) == 2
    with pytest.raises(ValueError, match="frames 0 and 1 belong to different systems"):
        split_relax_images([frames[0], frames[3]], "f.extxyz")
    with pytest.raises(ValueError, match="last initial frame"):
        split_relax_images(frames[:3], "f.extxyz")
    with pytest.raises(ValueError, match="f.extxyz: holds no structures"):
        split_relax_images([], "f.extxyz")
    with pytest.raises(FileNotFoundError, match="nope.extxyz"):
        read_relax_file(tmp_path / "nope.extxyz")


def test_pos_relaxed_layout_and_plain_layout():
    initial = _slab(-1.0, energy_relaxed=-4.0)
    target = initial.positions + [0.0, 0.0, 0.1]
    initial.new_array("pos_relaxed", target)
    task = split_relax_images([initial])
    assert task.initial == [initial]
    np.testing.assert_allclose(task.reference[0].positions, target)
    assert task.reference[0].get_potential_energy() == -4.0
    del initial.info["energy_relaxed"]
    with pytest.raises(ValueError, match="pos_relaxed'] but no info\\['energy_relaxed'\\]"):
        split_relax_images([initial], "x.extxyz")
    plain = split_relax_images([_slab(-1.0)])
    assert plain.initial is None and len(plain.reference) == 1


def test_predictions_read_relax_output_fields():
    a = _slab(-3.0, converged=False, relax_steps=300)
    b = _slab(relax_error="Structure 1: NaN forces")  # what eqv2 relax writes
    c = _slab(error="boom")
    p = predictions_from_images([a, b, c])
    assert (p[0].energy, p[0].converged, p[0].steps, p[0].error) == (-3.0, False, 300, None)
    assert p[1].error == "Structure 1: NaN forces" and p[1].energy is None
    assert p[2].error == "boom"
    # an input's reference energy kept in info is never taken for the prediction
    assert predictions_from_images([_slab(energy_relaxed=-5.0)])[0].energy is None
    in_info = _slab()
    in_info.info["energy"] = -4.0
    assert predictions_from_images([in_info])[0].energy == -4.0


def test_predictions_from_results_are_put_in_input_order():
    results = [
        SimpleNamespace(index=1, atoms=_slab(), energy=-2.0, converged=False, steps=9, error=None),
        SimpleNamespace(index=0, atoms=_slab(), energy=-1.0, converged=True, steps=4, error=None),
    ]
    p = predictions_from_results(results)
    assert [x.energy for x in p] == [-1.0, -2.0] and [x.steps for x in p] == [4, 9]


def test_evaluate_relaxations_is_a_deprecated_alias():
    from eqv2.simulate import evaluate_relaxations

    with pytest.warns(DeprecationWarning, match="score_relaxations"):
        m = evaluate_relaxations([Prediction(_slab(), -1.0)], [_slab(-1.0)])
    assert m == score_relaxations([Prediction(_slab(), -1.0)], [_slab(-1.0)])


def test_reading_functions_stay_importable_from_relax_evaluation():
    for name in ("Prediction", "RelaxTask", "read_relax_file", "split_relax_images"):
        assert getattr(relax_evaluation, name) is getattr(
            __import__("eqv2.simulate.relax_records", fromlist=[name]), name
        )
