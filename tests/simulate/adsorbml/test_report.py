"""Success, speed-up and aggregation arithmetic on hand-made numbers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eqv2.simulate.adsorbml import aggregate, format_table, top_k_rows
from eqv2.simulate.adsorbml.report import best_of_top_k, is_success, speedup


def test_best_of_top_k_skips_missing_values():
    energies = [-1.0, None, -1.5, float("nan"), -3.0]
    assert best_of_top_k(energies, 1) == -1.0
    assert best_of_top_k(energies, 2) == -1.0
    assert best_of_top_k(energies, 3) == -1.5
    assert best_of_top_k(energies, 5) == -3.0
    assert best_of_top_k([None, None], 2) is None
    with pytest.raises(ValueError, match="k must be >= 1"):
        best_of_top_k(energies, 0)


def test_success_is_within_threshold_or_lower():
    assert is_success(-1.0, -1.05)  # 0.05 above
    assert is_success(0.1, 0.0)  # exactly at the threshold
    assert not is_success(-1.0, -1.2)  # 0.2 above
    assert is_success(-2.0, -1.0)  # lower than the reference: success
    assert not is_success(None, -1.0) and not is_success(-1.0, None)


def test_speedup():
    assert speedup(900, 3) == 300.0
    assert speedup(None, 3) is None
    assert speedup(900, 0) is None


def test_top_k_rows_single_system():
    # reference energies of the ML top-5, in ML order; reference minimum -2.0; baseline 1000 calls
    rows = top_k_rows([-1.7, None, -1.95, -2.3, -1.0], [1, 1, 1, 1, 1], -2.0, 1000, max_k=5)
    assert [r.success for r in rows] == [False, False, True, True, True]
    assert [r.much_better for r in rows] == [False, False, False, True, True]
    assert [r.best_energy for r in rows] == [-1.7, -1.7, -1.95, -2.3, -2.3]
    assert rows[2].gap == pytest.approx(0.05)
    assert [r.calls for r in rows] == [1, 2, 3, 4, 5]
    assert [r.speedup for r in rows] == [1000.0, 500.0, 1000 / 3, 250.0, 200.0]


def test_top_k_rows_relaxation_costs_and_short_lists():
    rows = top_k_rows([-1.0, -2.0], [40, 60], -2.0, 500, max_k=3)
    assert [r.calls for r in rows] == [40, 100, 100]
    assert [r.speedup for r in rows] == [12.5, 5.0, 5.0]
    assert [r.success for r in rows] == [False, True, True]
    with pytest.raises(ValueError, match="2 energies but 1 call counts"):
        top_k_rows([-1.0, -2.0], [1], -2.0, 10)


def test_no_valid_candidate_costs_nothing_and_fails():
    rows = top_k_rows([], [], -2.0, 100, max_k=2)
    assert [(r.success, r.calls, r.speedup, r.best_energy) for r in rows] == [
        (False, 0, None, None)
    ] * 2


def test_unknown_reference_minimum_gives_no_success():
    rows = top_k_rows([-1.0], [1], None, None, max_k=2)
    assert not any(r.success for r in rows) and all(r.speedup is None for r in rows)


def test_aggregate_over_systems():
    a = top_k_rows([-1.0, -2.0], [1, 1], -2.0, 100, max_k=2)  # fails at k=1, succeeds at 2
    b = top_k_rows([-3.0, -2.5], [1, 1], -3.05, 300, max_k=2)  # succeeds at k=1
    out = aggregate([a, b], [100, 300])
    assert [o["success_rate"] for o in out] == [0.5, 1.0]
    assert [o["calls"] for o in out] == [2, 4]
    assert [o["speedup"] for o in out] == [200.0, 100.0]  # (100 + 300) / calls
    assert aggregate([a, b], [100, None])[0]["speedup"] is None
    assert aggregate([], []) == []


def test_tables_print_every_k():
    rows = top_k_rows([-1.0, -2.0], [1, 1], -2.0, 100, max_k=2)
    text = format_table(rows, title="ML+SP")
    assert text.splitlines()[0] == "ML+SP" and "yes" in text and "100.0" in text
    text = format_table(aggregate([rows], [100]))
    assert "  0.0%" in text and "100.0%" in text


@settings(max_examples=50, deadline=None)
@given(
    energies=st.lists(st.one_of(st.none(), st.floats(-5, 5)), min_size=1, max_size=8),
    calls=st.integers(1, 50),
    e_min=st.floats(-5, 5),
)
def test_success_never_lost_and_costs_grow_with_k(energies, calls, e_min):
    rows = top_k_rows(energies, [calls] * len(energies), e_min, 1000, max_k=8)
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row.success >= prev.success
        assert row.calls >= prev.calls
        if prev.best_energy is not None:
            assert row.best_energy <= prev.best_energy
