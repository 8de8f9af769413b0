"""Every command that runs a checkpoint takes the same model options."""

import pytest

from eqv2.cli.main import build_parser

COMMANDS = {
    "predict": ["ckpt.pt", "in.xyz", "-o", "out.xyz"],
    "relax": ["ckpt.pt", "in.xyz", "-o", "out.xyz"],
    "evaluate-relax": ["ckpt.pt", "data.xyz"],
    "md": ["ckpt.pt", "in.xyz", "-o", "out.xyz"],
    "adsorbml": ["ckpt.pt", "--slab", "slab.xyz", "--adsorbate", "*O", "--out", "d"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_model_options_are_shared(command):
    parse = build_parser().parse_args
    base = [command, *COMMANDS[command]]
    default = parse(base)
    assert (default.device, default.dtype, default.use_ema) == ("cpu", "float32", False)
    short = parse([*base, "--float64", "--use-ema", "--device", "cuda"])
    assert (short.device, short.dtype, short.use_ema) == ("cuda", "float64", True)
    assert parse([*base, "--dtype", "float64"]).dtype == "float64"
    with pytest.raises(SystemExit):
        parse([*base, "--dtype", "float16"])


def test_trust_pickle_flag():
    parse = build_parser().parse_args
    assert parse(["predict", *COMMANDS["predict"], "--trust-pickle"]).trust_pickle is True


@pytest.mark.parametrize(
    ("command", "python", "cli"),
    [
        ("predict", "or pass trust_pickle=True.", "or pass --trust-pickle."),
        ("evaluate", "or pass trust_pickle=True.", "or pass trust_pickle=True."),  # no flag
        ("md", "load it with use_ema=False.", "load it with no --use-ema."),
        ("data", "choose another path or pass overwrite=True.", "choose another path or pass "
         "--overwrite."),
        ("evaluate", "(e.g. energy_key='REF_energy')", "(e.g. --energy-key REF_energy)"),
        ("train", "(e.g. forces_key='REF_forces')", "(e.g. --set data.forces_key=REF_forces)"),
        ("relax", "(e.g. energy_key='REF_energy')", "(e.g. energy_key='REF_energy')"),
    ],
)  # fmt: skip
def test_messages_name_the_flag_of_the_command(command, python, cli):
    from eqv2.cli.messages import cli_message

    assert cli_message(python, command) == cli


def test_pickled_checkpoint_error_names_the_flag(tmp_path, capsys):
    import fractions

    import torch

    from eqv2.cli.main import main

    path = tmp_path / "pickled.pt"
    torch.save({"w": torch.zeros(2), "lr": fractions.Fraction(1, 3)}, path)
    (tmp_path / "in.xyz").write_text("1\n\nH 0 0 0\n")
    argv = ["predict", str(path), str(tmp_path / "in.xyz"), "-o", str(tmp_path / "o.xyz")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pass --trust-pickle." in err and "trust_pickle=True" not in err
    assert main([*argv, "--trust-pickle"]) == 2  # now it loads, and is not a model checkpoint
    assert "Refused to load" not in capsys.readouterr().err
