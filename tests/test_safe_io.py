"""Tests for eqv2.safe_io (atomic writes) and its deprecated former name eqv2.atomic."""

from __future__ import annotations

import importlib
import json
import os
import stat

import pytest

from eqv2.safe_io import atomic_write_path, write_json


def test_write_replaces_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "data.txt"
    with atomic_write_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.txt"]


def test_exception_mid_write_keeps_previous_file(tmp_path):
    target = tmp_path / "data.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"), atomic_write_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_mode_follows_umask_not_mkstemp(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "x.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"a": 1}


def test_old_module_name_warns_and_returns_the_same_functions():
    atomic = importlib.import_module("eqv2.atomic")
    with pytest.warns(DeprecationWarning, match=r"eqv2\.atomic\.write_json .* eqv2\.safe_io"):
        from eqv2.atomic import write_json as old_write_json
    assert old_write_json is write_json
    with pytest.warns(DeprecationWarning, match="atomic_write_path"):
        assert atomic.atomic_write_path is atomic_write_path
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        atomic.nope  # noqa: B018
