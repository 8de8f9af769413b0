"""Streaming target statistics equal the in-memory fits; the subsample is seeded."""

from __future__ import annotations

import numpy as np
import pytest

from eqv2.data import Structure
from eqv2.data.targets import fit_element_references, fit_normalizers
from eqv2.train.target_fit import TargetStatistics, fit_sample, stream_statistics


def _structures(n: int, seed: int = 0) -> list[Structure]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 7))
        numbers = rng.choice([1, 6, 8, 29], size=k)
        energy = float(np.array([0, -3.4, 0, 0, 0, 0, -7.1, 0, -4.9])[np.minimum(numbers, 8)].sum()
                       - 3.7 * (numbers == 29).sum() + 0.1 * rng.standard_normal())  # fmt: skip
        out.append(Structure(numbers=numbers, positions=rng.random((k, 3)) * 5 + 2 * i,
                             energy=energy, forces=rng.standard_normal((k, 3))))  # fmt: skip
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_fit_equals_the_in_memory_fit(workers):
    data = _structures(600)
    stats = stream_statistics(data, num_workers=workers)
    numbers = [s.numbers for s in data]
    energies = [s.energy for s in data]
    refs = fit_element_references(numbers, energies)
    np.testing.assert_allclose(stats.element_references(), refs, rtol=1e-9, atol=1e-9)
    expected = fit_normalizers(energies, [s.forces for s in data], numbers, refs)
    got = stats.normalizers(stats.element_references())
    for key in ("energy", "forces"):
        for field in ("mean", "std"):
            assert got[key][field] == pytest.approx(expected[key][field], rel=1e-8, abs=1e-12)
    plain = fit_normalizers(energies)
    assert stats.normalizers()["energy"]["mean"] == pytest.approx(plain["energy"]["mean"])
    assert stats.normalizers()["energy"]["std"] == pytest.approx(plain["energy"]["std"])


def test_elements_always_together_share_their_energy():
    # C and O only ever as CO: the minimum-norm solution splits the CO energy evenly
    data = [
        Structure(numbers=[6, 8] * k, positions=np.arange(6 * k).reshape(-1, 3) * 1.5,
                  energy=-10.0 * k, forces=np.zeros((2 * k, 3)))
        for k in (1, 2, 3)
    ]  # fmt: skip
    refs = stream_statistics(data).element_references()
    assert refs[6] == pytest.approx(-5.0) and refs[8] == pytest.approx(-5.0)
    assert refs[1] == 0.0


def test_large_sets_are_subsampled_with_the_seed():
    assert fit_sample(10, limit=20).tolist() == list(range(10))
    a, b = fit_sample(1000, 100, seed=1), fit_sample(1000, 100, seed=1)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 100
    assert (np.diff(a) > 0).all()  # read front to back
    assert a.tolist() != fit_sample(1000, 100, seed=2).tolist()
    stats = stream_statistics(_structures(50), limit=20)
    assert stats.n == 20


def test_missing_labels_are_named():
    data = _structures(3)
    data[2].forces = None
    with pytest.raises(ValueError, match="train structure 2: .*'forces' is required"):
        stream_statistics(data, num_workers=1)
    with pytest.raises(ValueError, match="no structures"):
        TargetStatistics().normalizers()
