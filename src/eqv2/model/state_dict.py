"""Check that weights fit a model, reporting every missing, unexpected and misshaped key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

__all__ = ["StateDictMismatchError", "format_shape", "validate_state_dict"]


class StateDictMismatchError(ValueError):
    """Weights do not fit the model. Attributes list every offending key."""

    def __init__(
        self,
        message: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[tuple[str, torch.Size, torch.Size]],
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


def format_shape(shape: Iterable[int]) -> str:
    """``[2, 3]``: a shape as the messages print it."""
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def validate_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Size | tuple[int, ...]],
    *,
    source: str = "the checkpoint",
    max_listed: int = 40,
) -> None:
    """Check that ``state_dict`` has exactly the ``expected`` keys with the expected shapes.

    Missing, unexpected and misshaped keys are all reported in one
    :class:`StateDictMismatchError` naming each key (with shapes), followed by the likely fix.

    Args:
        state_dict: the weights to load (eqv2 names).
        expected: ``{name: shape}`` of the model, e.g. ``{k: v.shape for k, v in
            model.state_dict().items()}``.
        source: how to name the weights' origin in the message (e.g. the file path).
        max_listed: at most this many keys are spelled out per category.
    """
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        (k, torch.Size(expected[k]), torch.Size(state_dict[k].shape))
        for k in expected
        if k in state_dict and torch.Size(state_dict[k].shape) != torch.Size(expected[k])
    ]
    if not (missing or unexpected or mismatched):
        return

    def listing(items: list[str]) -> str:
        shown = "\n".join(f"    {item}" for item in items[:max_listed])
        more = len(items) - max_listed
        return shown + (f"\n    ... and {more} more" if more > 0 else "")

    lines = [f"The weights in {source} do not fit the model:"]
    if missing:
        lines.append(f"  {len(missing)} missing key(s) (the model has them, the weights do not):")
        lines.append(listing([f"{k} {format_shape(expected[k])}" for k in missing]))
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected key(s) (in the weights, not in the model):")
        lines.append(listing([f"{k} {format_shape(state_dict[k].shape)}" for k in unexpected]))
    if mismatched:
        lines.append(f"  {len(mismatched)} key(s) with the wrong shape:")
        lines.append(
            listing(
                [
                    f"{k}: weights {format_shape(got)}, model {format_shape(want)}"
                    for k, want, got in mismatched
                ]
            )
        )
    hints = []
    if any(k.startswith(("module.", "backbone.", "output_heads.")) for k in unexpected):
        hints.append(
            "the weights still use fairchem's key names: read the file with "
            "eqv2.fairchem.read_fairchem_checkpoint, which maps them and drops fairchem's buffers"
        )
    if mismatched or missing or unexpected:
        hints.append(
            "if the names match but shapes differ, or whole blocks are missing/extra, the model "
            "was built with a different config than the weights were trained with (compare "
            "num_layers, sphere_channels, lmax_list/mmax_list, ffn_hidden_channels, num_heads, "
            "use_grid_mlp, load_energy_lin_ref ... with the checkpoint's config); otherwise the "
            "file is not the checkpoint you meant"
        )
    lines.append("Fix: " + "; ".join(hints) + ".")
    raise StateDictMismatchError("\n".join(lines), missing, unexpected, mismatched)
