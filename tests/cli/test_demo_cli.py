"""eqv2 demo's default config comes from the installed package, not the repository."""

from __future__ import annotations

import argparse
from importlib import resources

from eqv2.cli.demo import QUICKSTART, add_parser
from eqv2.train.run_config import load_run_config


def test_default_config_is_the_packaged_quickstart():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo"])
    assert args.config is None  # resolved to QUICKSTART when the demo runs
    with resources.as_file(QUICKSTART) as path:
        run = load_run_config(path)
    assert "eqv2" in str(path) and path.name == "quickstart.yaml"
    assert run.train.max_steps > 0 and run.model.num_layers >= 1
