import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.train.metrics import MetricAccumulator, format_metrics, s2ef_metrics


def test_hand_made_case():
    # two structures: 2 atoms (second fixed) and 1 atom
    e_pred, e_ref = np.array([1.0, -2.0]), np.array([1.01, -1.0])
    f_ref = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2.0]])
    f_pred = np.array([[1.0, 0.02, 0], [5.0, 5.0, 5.0], [0, 0, -2.0]])
    batch = np.array([0, 0, 1])
    fixed = np.array([False, True, False])
    m = s2ef_metrics(e_pred, e_ref, f_pred, f_ref, batch, fixed)
    assert m["energy_mae"] == pytest.approx((0.01 + 1.0) / 2)
    # free atoms 0 and 2: |dF| components (0, .02, 0) and (0, 0, 4)
    assert m["force_mae"] == pytest.approx((0.02 + 4.0) / 6)
    cos0 = 1.0 / math.sqrt(1 + 0.02**2)
    assert m["force_cos"] == pytest.approx((cos0 - 1.0) / 2)
    # structure 0: dE .01 < .02 and worst free component .02 < .03 -> within; structure 1 not
    assert m["efwt"] == pytest.approx(0.5)
    assert m["n_structures"] == 2
    # counting all atoms: atom 1 (error 5) breaks structure 0's EFwT
    m_all = s2ef_metrics(e_pred, e_ref, f_pred, f_ref, batch, fixed, free_atoms_only=False)
    assert m_all["efwt"] == 0.0
    assert m_all["force_mae"] == pytest.approx((0.02 + 5 + 5 + 4 + 4.0) / 9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.integers(1, 4), st.integers(0, 999))
def test_batches_accumulate_like_one_pass(sizes, n_batches, seed):
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    e_p, e_r = rng.normal(size=len(sizes)), rng.normal(size=len(sizes))
    f_p, f_r = rng.normal(size=(n, 3)) * 0.05, rng.normal(size=(n, 3)) * 0.05
    fixed = rng.random(n) < 0.3
    batch = np.repeat(np.arange(len(sizes)), sizes)
    whole = s2ef_metrics(e_p, e_r, f_p, f_r, batch, fixed)
    acc = MetricAccumulator()
    bounds = np.cumsum([0, *sizes])
    for chunk in np.array_split(np.arange(len(sizes)), n_batches):
        if not len(chunk):
            continue
        a0, a1 = bounds[chunk[0]], bounds[chunk[-1] + 1]
        acc.update(
            torch.tensor(e_p[chunk]),
            torch.tensor(e_r[chunk]),
            torch.tensor(f_p[a0:a1]),
            torch.tensor(f_r[a0:a1]),
            torch.tensor(batch[a0:a1] - chunk[0]),
            torch.tensor(fixed[a0:a1]),
        )
    for key, value in acc.compute().items():
        assert value == pytest.approx(whole[key], nan_ok=True)


def test_table_lists_every_split():
    m = {"energy_mae": 0.1, "force_mae": 0.02, "force_cos": 0.9, "efwt": 0.25, "n_structures": 4}
    table = format_metrics({"val": m, "test": m})
    assert "val" in table and "test" in table and "25.0%" in table


def test_totals_of_parts_add_up_to_the_whole():
    """What distributed validation does: sum the processes' totals, then compute."""
    rng = np.random.default_rng(0)
    e_pred, e_ref = rng.normal(size=4), rng.normal(size=4)
    f_pred, f_ref = rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    batch = np.array([0, 0, 1, 1, 1, 2, 3, 3, 3])
    fixed = rng.random(9) < 0.3
    whole = s2ef_metrics(e_pred, e_ref, f_pred, f_ref, batch, fixed)
    parts = []
    for structures in ([0, 2], [1, 3]):
        atoms = np.isin(batch, structures)
        acc = MetricAccumulator()
        acc.update(*(torch.as_tensor(v) for v in (e_pred[structures], e_ref[structures],
                   f_pred[atoms], f_ref[atoms], np.searchsorted(structures, batch[atoms]),
                   fixed[atoms])))  # fmt: skip
        parts.append(acc.totals())
    merged = MetricAccumulator()
    merged.set_totals(parts[0] + parts[1])
    for key, value in merged.compute().items():
        assert value == pytest.approx(whole[key], rel=1e-12), key
    with pytest.raises(ValueError, match="expected 7 totals"):
        merged.set_totals(torch.zeros(3))
