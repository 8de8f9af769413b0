"""Tests for eqv2.deprecation: old names keep working and warn, naming the replacement."""

from __future__ import annotations

import warnings

import pytest

from eqv2.deprecation import REMOVAL_VERSION, deprecated_alias


def _double(x: int, *, times: int = 2) -> int:
    return x * times


def test_alias_warns_on_each_call_and_behaves_like_the_new_name():
    old = deprecated_alias(_double, "pkg.old_double")
    for _ in range(2):
        with pytest.warns(DeprecationWarning) as record:
            assert old(3, times=3) == 9
        message = str(record[0].message)
        assert "pkg.old_double" in message and "_double" in message and REMOVAL_VERSION in message
        assert record[0].filename == __file__  # points at the caller's line
    assert old.__name__ == "_double" and "Deprecated alias" in old.__doc__


def test_new_name_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _double(2) == 4


def test_renamed_evaluate_names_keep_deprecated_aliases(tiny_float64_model):
    """The five "evaluate"s got names that say what they do; the old names warn and agree."""
    from eqv2.model import Potential
    from eqv2.train import evaluation, workflow
    from eqv2.train.trainer import Trainer
    from tests.tiny import tiny_structures

    assert Potential.evaluate.__wrapped__ is Potential.compute
    assert Trainer.evaluate.__wrapped__ is Trainer.validate
    assert evaluation.evaluate_split.__wrapped__ is evaluation.score_split
    assert workflow.evaluate_checkpoint.__wrapped__ is workflow.score_checkpoint
    pot = Potential(tiny_float64_model)
    graph = pot.build_graph(tiny_structures())
    new = pot.compute(graph)
    with pytest.warns(DeprecationWarning, match="Potential.compute"):
        old = pot.evaluate(graph)
    assert old["energy"].tolist() == new["energy"].tolist()
