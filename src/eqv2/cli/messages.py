"""Library error messages in command-line spelling.

The library names its Python keywords in fixes (``pass trust_pickle=True``,
``energy_key='REF_energy'``); on the command line the same fix is a flag. :func:`cli_message`
rewrites the keywords a command has a flag for, and leaves the others.
"""

from __future__ import annotations

import re

__all__ = ["cli_message"]

#: Commands that take the shared model options (``eqv2.cli.model_args``).
MODEL_COMMANDS = ("predict", "relax", "evaluate-relax", "md", "adsorbml")

#: Python spelling -> {command: command-line spelling}.
_FLAGS: dict[str, dict[str, str]] = {
    "trust_pickle=True": dict.fromkeys(MODEL_COMMANDS, "--trust-pickle"),
    "use_ema=True": dict.fromkeys(MODEL_COMMANDS, "--use-ema"),
    "use_ema=False": dict.fromkeys(MODEL_COMMANDS, "no --use-ema"),
    "overwrite=True": {"data": "--overwrite"},
}

#: Label keys ``energy_key='X'``: the flag (value follows after a space) or config override.
_KEY_FLAGS: dict[str, str] = {"evaluate": "--{label}-key {value}", "data": "--{label}-key {value}",
                              "train": "--set data.{label}_key={value}"}  # fmt: skip

_KEY_RE = re.compile(r"\b(energy|forces|stress)_key=(['\"])([^'\"]*)\2")


def cli_message(message: str, command: str) -> str:
    """``message`` with the Python keywords ``command`` has flags for in flag spelling."""
    for python, flags in _FLAGS.items():
        if command in flags:
            message = message.replace(python, flags[command])
    template = _KEY_FLAGS.get(command)
    if template is not None:
        message = _KEY_RE.sub(lambda m: template.format(label=m[1], value=m[3]), message)
    return message
