"""Write EquiformerV2 checkpoints that fairchem 1.x can load (:func:`to_fairchem_checkpoint`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from eqv2.fairchem.config import DENS_ARGS, DENS_BACKBONE_PATH, FAIRCHEM_ARGS
from eqv2.fairchem.keys import Layout, to_fairchem_state_dict
from eqv2.model.checkpoint import PathLike, atomic_save
from eqv2.model.config import EquiformerV2Config
from eqv2.model.heads import DEFAULT_HEADS, ResolvedHead, resolve_heads

__all__ = ["DENOISING_NAMES", "to_fairchem_checkpoint"]

#: eqv2's ``train.denoising`` keys → fairchem's ``optim.denoising_pos_params`` keys (DeNS trainer)
DENOISING_NAMES = {
    "prob": "prob",
    "fixed_std": "fixed_noise_std",
    "std": "std",
    "num_steps": "num_steps",
    "std_low": "std_low",
    "std_high": "std_high",
    "corrupt_ratio": "corrupt_ratio",
    "all_atoms": "all_atoms",
}


def to_fairchem_checkpoint(
    path: PathLike | None = None,
    *,
    state_dict: Mapping[str, torch.Tensor],
    config: EquiformerV2Config | Mapping[str, Any],
    normalizers: Mapping[str, Mapping[str, float]] | None = None,
    element_references: torch.Tensor | None = None,
    buffers: Mapping[str, torch.Tensor] | None = None,
    layout: Layout = "hydra",
    denoising: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build (and optionally write, atomically) a checkpoint that fairchem 1.x can load.

    The result has fairchem 1.x's layout: ``config`` with ``model = {"name": "hydra",
    "backbone": {..., "model": "equiformer_v2_backbone"}, "heads": {...}}`` (or ``{"name":
    "equiformer_v2", ...}`` for ``layout="monolithic"``), ``outputs``, ``loss_functions``,
    ``evaluation_metrics``, ``optim``, ``dataset``; ``state_dict`` with a ``module.`` prefix;
    ``normalizers`` as ``{target: {"mean", "rmsd"}}``; ``elementrefs`` when given. Only
    fairchem's own model arguments are written (eqv2 extensions such as ``direct_forces`` are
    dropped), and without ``force_block`` weights only the energy head is declared.

    fairchem's trainer loads state dicts strictly, including its buffers. When ``buffers`` is not
    given (eqv2 does not store fairchem's buffers), the config sets ``task.strict_load: false``
    so fairchem keeps the buffers it computes itself; pass :attr:`FairchemCheckpoint.buffers`
    to write a file that also strict-loads. Note that ``OCPCalculator`` needs
    ``trainer="equiformerv2_forces"`` (or ``"ocp"``) for 1.x-style files.

    ``denoising``: the DeNS recipe a model was trained with (the flat ``train.denoising``
    mapping, `eqv2.train.denoising.DenoisingConfig.to_dict`), written as fairchem's DeNS
    trainer keeps it: ``optim.use_denoising_pos``, ``optim.denoising_pos_params``,
    ``optim.denoising_pos_coefficient`` and the ``denoising_pos_target`` normaliser (mean 0,
    rmsd = the noise std, or ``std_high`` for sampled σ). A Noisy Nodes head
    (``position_denoising_head``) has no fairchem counterpart and is refused.

    Only tensors and plain values are written, so the file loads with ``weights_only=True``.
    """
    cfg = config if isinstance(config, EquiformerV2Config) else EquiformerV2Config.from_dict(config)
    if layout not in ("hydra", "monolithic"):
        raise ValueError(f"layout={layout!r}: choose 'hydra' or 'monolithic'.")
    if layout == "monolithic" and (cfg.backbone == "dens" or cfg.heads is not None):
        raise ValueError(
            "layout='monolithic' holds only the OC20 energy and force heads on the plain "
            "backbone; export this model (heads or DeNS backbone) with layout='hydra'."
        )
    if any(k.startswith("property_heads.") for k in state_dict):
        raise ValueError(
            "the model has property heads (named targets such as a QM9 gap), which fairchem's "
            "checkpoint layout has no place for; keep it as an eqv2 checkpoint (save_model)."
        )
    extensions = eqv2_only_options(cfg)
    if extensions:
        raise ValueError(
            f"the model uses eqv2-only architecture options {extensions}, which fairchem's "
            "EquiformerV2 does not implement: its file would load into a different function. "
            "Keep the eqv2 checkpoint (save_model), or train without these options to export."
        )
    has_forces = any(k.startswith("force_block.") for k in state_dict)
    resolved = resolve_heads(cfg) if cfg.heads is not None else None
    if resolved is not None and "denoising" in resolved:
        raise ValueError(
            f"head {resolved['denoising'].name!r} (position_denoising_head, Noisy Nodes) has no "
            "fairchem counterpart: remove it from model.heads and its denoising_head.* weights "
            "(it only serves training) before exporting, or keep the eqv2 checkpoint."
        )
    stress_head = resolved.get("stress") if resolved is not None else None
    outputs, losses, metrics = _targets(has_forces, stress_head)
    checkpoint: dict[str, Any] = {
        "state_dict": to_fairchem_state_dict(
            {k: v.detach().cpu() for k, v in state_dict.items()},
            layout=layout,
            prefix="module.",
            buffers=buffers,
            heads=resolved,
        ),
        "normalizers": {
            target: {
                "mean": torch.tensor(float(stats["mean"])),
                "rmsd": torch.tensor(float(stats.get("std", stats.get("rmsd", 1.0)))),
            }
            for target, stats in (normalizers or {}).items()
        },
        "config": {
            "trainer": "equiformerv2_forces",
            "task": {} if buffers else {"strict_load": False},
            "model": _model_section(cfg, layout, has_forces, resolved),
            "outputs": outputs,
            "loss_functions": losses,
            "evaluation_metrics": {"primary_metric": "energy_mae", "metrics": metrics},
            "optim": {"batch_size": 1, "eval_batch_size": 1, "num_workers": 0},
            "dataset": {"format": "ase_db", "src": ""},
            "slurm": {},
            "amp": False,
            "cmd": {"version": "eqv2-export"},
        },
        "amp": None,
        "epoch": 0,
        "step": 0,
        "ema": None,
        "val_metrics": None,
    }
    if denoising is not None:
        _write_denoising(checkpoint, denoising)
    if element_references is not None:
        checkpoint["elementrefs"] = {
            "energy": {"element_references": torch.as_tensor(element_references).detach().cpu()}
        }
    if path is not None:
        atomic_save(checkpoint, path)
    return checkpoint


#: norms fairchem knows by name (``merge_layer_norm`` computes ``rms_norm_sh``: rename it)
_FAIRCHEM_NORMS = ("layer_norm", "layer_norm_sh", "rms_norm_sh")


def eqv2_only_options(cfg: EquiformerV2Config) -> list[str]:
    """The config's eqv2 extensions that change the model's function (smooth mode, the
    EquiformerV3 options), as ``key=value`` strings; empty when fairchem computes the same."""
    found = []
    for key in ("envelope", "ffn_width_multiplier", "attn_grid_resolution", "ffn_grid_resolution"):
        if getattr(cfg, key) is not None:
            found.append(f"{key}={getattr(cfg, key)!r}")
    if cfg.max_neighbors is None:
        found.append("max_neighbors=None")
    if cfg.norm_type not in _FAIRCHEM_NORMS:
        found.append(f"norm_type={cfg.norm_type!r}")
    for key in ("attn_activation", "ffn_activation"):
        if getattr(cfg, key) not in ("silu", "scaled_silu"):
            found.append(f"{key}={getattr(cfg, key)!r}")
    return found


def _model_section(
    cfg: EquiformerV2Config,
    layout: Layout,
    has_forces: bool,
    resolved: Mapping[str, ResolvedHead] | None,
) -> dict[str, Any]:
    """fairchem's ``config["model"]``: only fairchem's own model arguments (eqv2 extensions
    such as ``direct_forces`` are dropped), and the heads."""
    allowed = FAIRCHEM_ARGS | ({"activation_checkpoint"} if layout == "hydra" else set())
    dens = cfg.backbone == "dens"
    if dens:
        allowed = allowed | DENS_ARGS
    kwargs = {k: v for k, v in cfg.ignored.items() if k in allowed}
    kwargs.update({k: v for k, v in cfg.to_dict().items() if k in allowed})
    kwargs.setdefault("use_pbc", True)
    kwargs.setdefault("otf_graph", True)
    kwargs["regress_forces"] = has_forces
    if layout == "monolithic":
        return {"name": "equiformer_v2", **kwargs}
    if resolved is not None:
        heads = {head.name: dict(head.spec) for head in resolved.values()}
    else:
        heads = {
            name: dict(spec)
            for name, spec in DEFAULT_HEADS.items()
            if name == "energy" or (name == "forces" and has_forces)
        }
    return {
        "name": "hydra",
        "backbone": {**kwargs, "model": DENS_BACKBONE_PATH if dens else "equiformer_v2_backbone"},
        "heads": heads,
        "otf_graph": True,
        # fairchem's trainer finds decomposed stress parts only in a flat output dict
        "pass_through_head_outputs": resolved is not None and "stress" in resolved,
    }


def _targets(
    has_forces: bool, stress_head: ResolvedHead | None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, list[str]]]:
    """fairchem's ``outputs``, ``loss_functions`` and ``evaluation_metrics["metrics"]`` for the
    model's targets (its trainer refuses a file whose outputs do not match its heads)."""
    outputs: dict[str, Any] = {"energy": {"level": "system", "property": "energy"}}
    losses: list[dict[str, Any]] = [{"energy": {"fn": "mae", "coefficient": 1}}]
    metrics: dict[str, list[str]] = {"energy": ["mae"]}
    if has_forces:
        outputs["forces"] = {
            "level": "atom",
            "property": "forces",
            "train_on_free_atoms": True,
            "eval_on_free_atoms": True,
        }
        losses.append({"forces": {"fn": "l2mae", "coefficient": 1}})
        metrics["forces"] = ["mae"]
    if stress_head is not None:
        name = stress_head.spec.get("output_name", "stress")
        outputs[name] = {"level": "system", "property": name}
        if stress_head.spec.get("decompose", False):
            parts = {f"{name}_isotropic": 0, f"{name}_anisotropic": 2}
            outputs[name]["decomposition"] = {k: {"irrep_dim": d} for k, d in parts.items()}
            losses += [{k: {"fn": "mae", "coefficient": 1}} for k in parts]
            metrics.update({k: ["mae"] for k in parts})
        else:
            losses.append({name: {"fn": "mae", "coefficient": 1}})
        metrics[name] = ["mae"]
    return outputs, losses, metrics


def _write_denoising(checkpoint: dict[str, Any], recipe: Mapping[str, Any]) -> None:
    """The DeNS recipe in fairchem's places (see `to_fairchem_checkpoint`)."""
    unknown = sorted(set(recipe) - set(DENOISING_NAMES) - {"coefficient"})
    if unknown:
        raise ValueError(f"denoising recipe: unknown key(s) {unknown}; see DENOISING_NAMES.")
    params = {fc: recipe[eq] for eq, fc in DENOISING_NAMES.items() if eq in recipe}
    optim = checkpoint["config"]["optim"]
    optim["use_denoising_pos"] = True
    optim["denoising_pos_params"] = params
    optim["denoising_pos_coefficient"] = recipe.get("coefficient")
    fixed = params.get("fixed_noise_std", True)
    scale = params.get("std") if fixed else params.get("std_high")
    checkpoint["normalizers"]["denoising_pos_target"] = {
        "mean": torch.tensor(0.0),
        "rmsd": torch.tensor(float(scale)),
    }
