"""Commands that do not split their work across torchrun's processes refuse to run under it."""

from __future__ import annotations

import pytest

from eqv2.cli.main import TORCHRUN_COMMANDS, main


@pytest.mark.parametrize(
    "argv",
    [
        ["md", "m.pt", "in.extxyz", "-o", "md.extxyz"],
        ["evaluate-relax", "m.pt", "data.extxyz"],
        ["evaluate", "m.pt", "data.extxyz"],
    ],
    ids=lambda argv: argv[0],
)
def test_refused_under_torchrun_before_any_work(argv, monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"eqv2 {argv[0]}: error: started as one of 2 torchrun processes" in err
    assert "Run it as one process" in err and "eqv2 train, predict, relax, adsorbml" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_one_process_and_the_splitting_commands_are_not_refused(monkeypatch, tmp_path, capsys):
    assert set(TORCHRUN_COMMANDS) == {"train", "predict", "relax", "adsorbml"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "1")
    argv = ["md", str(tmp_path / "missing.pt"), str(tmp_path / "in.extxyz"), "-o", "x.extxyz"]
    assert main(argv) == 2  # runs, and fails on the missing input instead
    assert "torchrun" not in capsys.readouterr().err
