"""AdsorbML's figures of merit: success and speed-up for the top k configurations.

For one adsorbate+slab system and a strategy (ML+SP: a reference single point on each of the k
lowest-energy valid ML relaxations; ML+RX: a reference relaxation from each), the best energy
at k is the lowest reference energy among the first k ranked configurations. The strategy
**succeeds** at k when that energy is within ``SUCCESS_THRESHOLD`` (0.1 eV) of the reference
minimum, or lower: ``best_k - E_min <= 0.1``. It is **much better** when ``best_k - E_min <
-0.1`` (the reference search missed a lower minimum). The **speed-up** is the reference cost of
the baseline search (calculator calls of relaxing every placement with the reference) over the
strategy's (its calls for the first k configurations); over several systems both costs are
summed first, and the success rate is the fraction of systems that succeed, as in the paper's
evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "SUCCESS_THRESHOLD",
    "TopK",
    "aggregate",
    "best_of_top_k",
    "format_table",
    "is_success",
    "speedup",
    "top_k_rows",
]

SUCCESS_THRESHOLD = 0.1  # eV


@dataclass(frozen=True)
class TopK:
    """One strategy's outcome at one k for one system.

    Attributes:
        k: configurations sent to the reference.
        best_energy: lowest reference energy among them (eV), None if none has one.
        gap: ``best_energy - reference minimum`` (eV), None if either is unknown.
        success: gap <= threshold (False when unknown).
        much_better: gap < -threshold.
        calls: reference calculator calls spent on these k configurations.
        speedup: baseline calls / ``calls`` (None when the baseline cost is unknown).
    """

    k: int
    best_energy: float | None
    gap: float | None
    success: bool
    much_better: bool
    calls: int
    speedup: float | None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def best_of_top_k(energies: Sequence[float | None], k: int) -> float | None:
    """Lowest finite energy among the first ``k`` entries (rank order); None if there is none."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    found = [e for e in energies[:k] if e is not None and math.isfinite(e)]
    return min(found) if found else None


def is_success(
    best: float | None, reference_minimum: float | None, threshold: float = SUCCESS_THRESHOLD
) -> bool:
    """``best - reference_minimum <= threshold``; False when either is unknown."""
    if best is None or reference_minimum is None:
        return False
    return best - reference_minimum <= threshold


def speedup(baseline_calls: int | None, strategy_calls: int) -> float | None:
    """``baseline_calls / strategy_calls``; None if the baseline is unknown or nothing was run."""
    if baseline_calls is None or strategy_calls <= 0:
        return None
    return baseline_calls / strategy_calls


def top_k_rows(
    ranked_energies: Sequence[float | None],
    ranked_calls: Sequence[int],
    reference_minimum: float | None,
    baseline_calls: int | None,
    max_k: int = 5,
    threshold: float = SUCCESS_THRESHOLD,
) -> list[TopK]:
    """Success and speed-up for k = 1..max_k of one system.

    Args:
        ranked_energies: reference energy of each configuration, lowest ML energy first (None
            where the reference failed or its relaxation was invalid).
        ranked_calls: reference calls spent on each configuration, same order.
        reference_minimum: the reference (e.g. DFT) minimum energy of the system.
        baseline_calls: reference calls of the baseline search, if known.
        max_k: largest k; with fewer configurations the last ones repeat the full list.
        threshold: success tolerance (eV).
    """
    if len(ranked_energies) != len(ranked_calls):
        raise ValueError(
            f"{len(ranked_energies)} energies but {len(ranked_calls)} call counts; give one each"
        )
    rows = []
    for k in range(1, max_k + 1):
        best = best_of_top_k(ranked_energies, k)
        gap = None if best is None or reference_minimum is None else best - reference_minimum
        calls = int(sum(ranked_calls[:k]))
        rows.append(
            TopK(
                k=k,
                best_energy=best,
                gap=gap,
                success=is_success(best, reference_minimum, threshold),
                much_better=gap is not None and gap < -threshold,
                calls=calls,
                speedup=speedup(baseline_calls, calls),
            )
        )
    return rows


def aggregate(
    systems: Sequence[Sequence[TopK]], baseline_calls: Sequence[int | None]
) -> list[dict]:
    """Success rate and speed-up per k over several systems.

    Args:
        systems: per system, its rows for k = 1..max_k (same max_k for all).
        baseline_calls: per system, the baseline's reference calls (None: unknown).

    Returns:
        Per k: ``k``, ``success_rate``, ``much_better_rate``, ``calls`` (summed), ``speedup``
        (summed baseline calls / summed calls; None if any baseline is unknown), ``systems``.
    """
    if len(systems) != len(baseline_calls):
        raise ValueError(f"{len(systems)} systems but {len(baseline_calls)} baseline costs")
    if not systems:
        return []
    ks = [row.k for row in systems[0]]
    known = all(b is not None for b in baseline_calls)
    total_baseline = sum(b for b in baseline_calls if b is not None)
    out = []
    for i, k in enumerate(ks):
        rows = [s[i] for s in systems]
        calls = sum(r.calls for r in rows)
        out.append(
            {
                "k": k,
                "success_rate": sum(r.success for r in rows) / len(rows),
                "much_better_rate": sum(r.much_better for r in rows) / len(rows),
                "calls": calls,
                "speedup": speedup(total_baseline if known else None, calls),
                "systems": len(rows),
            }
        )
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: Sequence[TopK | dict], title: str = "") -> str:
    """A plain-text table of per-k rows (:class:`TopK` or :func:`aggregate` dicts)."""
    lines = [title] if title else []
    single = bool(rows) and isinstance(rows[0], TopK)
    if single:
        header = f"{'k':>3} {'best E (eV)':>13} {'gap (eV)':>9} {'success':>8} "
        header += f"{'calls':>6} {'speed-up':>9}"
    else:
        header = f"{'k':>3} {'success rate':>13} {'much better':>12} {'calls':>7} {'speed-up':>9}"
    lines += [header, "-" * len(header)]
    for row in rows:
        if isinstance(row, TopK):
            lines.append(
                f"{row.k:>3} {_fmt(row.best_energy, '.4f'):>13} {_fmt(row.gap, '+.3f'):>9} "
                f"{'yes' if row.success else 'no':>8} {row.calls:>6} "
                f"{_fmt(row.speedup, '.1f'):>9}"
            )
        else:
            lines.append(
                f"{row['k']:>3} {row['success_rate']:>13.1%} {row['much_better_rate']:>12.1%} "
                f"{row['calls']:>7} {_fmt(row['speedup'], '.1f'):>9}"
            )
    return "\n".join(lines)
