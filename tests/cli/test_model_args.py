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
