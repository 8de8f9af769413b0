"""Run configuration files: one YAML with ``model``, ``train`` and ``data`` sections.

```yaml
model:   # EquiformerV2Config keys (fairchem's argument names)
  num_layers: 2
  lmax_list: [4]
train:   # TrainerConfig keys
  max_steps: 300
  lr: 0.0005
data:    # DataConfig keys
  train: data/train.extxyz
  val: data/val.extxyz
  linear_references: true
finetune:  # FinetuneConfig keys (optional): start from a trained model
  init_from: runs/pretrained/final.pt
outputs:   # optional: what the model predicts (eqv2.train.targets_spec)
  gap: {extensive: false, unit: eV}
loss:      # optional: one term per output
  gap: {fn: mae, coefficient: 1}
```

Without ``outputs``/``loss`` the ``train`` section's loss keys give energy + forces (+ stress),
as always; ``data.target`` selects named targets to train (``--set data.target=gap``).

Unknown keys anywhere are errors naming the file, the section and the closest valid key;
``overrides`` (``["train.lr=1e-3", "model.num_layers=4"]``, values parsed as YAML) are applied
on top, so ``eqv2 train config.yaml --set train.lr=1e-3`` works as expected.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eqv2.model.config import EquiformerV2Config
from eqv2.train.targets_spec import TaskSpec
from eqv2.train.task_config import parse_task
from eqv2.train.trainer_config import TrainerConfig

SECTIONS = ("model", "train", "data", "finetune", "outputs", "loss")


@dataclass
class DataConfig:
    """Where the data are and how labels are read and preprocessed."""

    train: str | None = None
    val: str | None = None
    test: str | None = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    #: where stress labels live (eV/Å³, ASE's sign; read when the model has a stress head)
    stress_key: str = "stress"
    #: fit per-element linear energy references on the training set (OC22 style)
    linear_references: bool = True
    #: user-given isolated-atom energies {symbol: eV}; replaces the fit when set
    e0s: dict[str, float] | None = None
    #: processes that read and batch structures while the model trains (0: the training
    #: process does it between steps); see eqv2.train.loader
    num_workers: int = 2
    #: steps each worker prepares ahead
    prefetch_factor: int = 2
    #: page-locked batches for faster copies to the GPU (null: on CUDA only)
    pin_memory: bool | None = None
    #: the final evaluation of the training split reads at most this many structures (a
    #: seeded subsample; 0 skips it); validation and test splits are evaluated whole
    train_eval_structures: int = 10_000
    #: train only these named targets (a name, "gap,homo" or a list), without energy and
    #: forces; their declarations in ``outputs`` (key, readout, unit) are kept
    target: str | list[str] | None = None


FINETUNE_TARGETS = ("keep", "refit")


@dataclass
class FinetuneConfig:
    """Start training from a trained model (eqv2 or fairchem checkpoint) instead of random
    weights: the weights are loaded, the optimiser, schedule and step count start fresh (unlike
    ``--resume``, which continues a run exactly). See ``eqv2.train.finetune``."""

    #: checkpoint to start from; None trains from scratch
    init_from: str | None = None
    #: take the file's EMA weights (fairchem files, eqv2 ``checkpoint.pt``) instead of the raw ones
    use_ema: bool = False
    #: normalisers and element references: "keep" the checkpoint's or "refit" them on the data
    targets: str = "keep"
    #: parameters not trained: groups (backbone, heads, energy_head, force_head) or name prefixes
    freeze: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.targets not in FINETUNE_TARGETS:
            raise ValueError(f"targets={self.targets!r}: choose one of {FINETUNE_TARGETS}.")
        if isinstance(self.freeze, str):
            self.freeze = [self.freeze]
        self.freeze = [str(item) for item in self.freeze or []]


@dataclass
class RunConfig:
    model: EquiformerV2Config = field(default_factory=EquiformerV2Config)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    source: str = "<defaults>"
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    #: the model keys the config set (the others are defaults); fine-tuning checks these against
    #: the checkpoint's config and takes the rest from it
    model_keys: tuple[str, ...] = ()
    #: the ``outputs`` and ``loss`` sections as written (None: absent)
    outputs: dict[str, Any] | None = None
    loss: Any = None

    @property
    def task(self) -> TaskSpec:
        """The outputs and loss terms this run trains (`eqv2.train.targets_spec`)."""
        return parse_task(self.outputs, self.loss, self.train, self.data.target, self.source)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.model.to_dict(),
            "train": dataclasses.asdict(self.train),
            "data": dataclasses.asdict(self.data),
            "finetune": dataclasses.asdict(self.finetune),
        }
        out.update({k: getattr(self, k) for k in ("outputs", "loss") if getattr(self, k)})
        return out


def _unknown(key: str, known: Sequence[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"{where}: unknown key {key!r}.{hint} Valid keys: {', '.join(sorted(known))}."
    )


def _check_keys(values: Mapping[str, Any], cls: type, where: str) -> None:
    known = [f.name for f in dataclasses.fields(cls) if f.name not in ("ignored", "source")]
    for key in values:
        if key not in known:
            raise _unknown(key, known, where)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set ``section.key=value`` items (values parsed as YAML) in a raw config dict."""
    out = {section: raw.get(section) for section in SECTIONS}
    out.update({s: dict(raw.get(s) or {}) for s in SECTIONS if s != "loss"})
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(
                f"--set {item!r}: expected section.key=value, e.g. train.lr=1e-3 or "
                "model.num_layers=4."
            )
        dotted, value = item.split("=", 1)
        section, key = dotted.split(".", 1)
        if section not in SECTIONS or section == "loss":
            raise _unknown(section, [s for s in SECTIONS if s != "loss"], f"--set {item!r}")
        out[section][key] = yaml.safe_load(value)
    return out


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; numeric-looking strings become floats."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def parse_run_config(raw: Mapping[str, Any], source: str = "<dict>") -> RunConfig:
    """Validate a raw config dict (see the module docstring) into a `RunConfig`."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source}: expected a mapping with sections {SECTIONS}.")
    for section in raw:
        if section not in SECTIONS:
            raise _unknown(section, SECTIONS, source)
    model_raw = {k: _number(v) for k, v in dict(raw.get("model") or {}).items()}
    train_raw = {k: _number(v) for k, v in dict(raw.get("train") or {}).items()}
    data_raw = dict(raw.get("data") or {})
    finetune_raw = dict(raw.get("finetune") or {})
    _check_keys(train_raw, TrainerConfig, f"{source} [train]")
    _check_keys(data_raw, DataConfig, f"{source} [data]")
    _check_keys(finetune_raw, FinetuneConfig, f"{source} [finetune]")
    try:
        model = EquiformerV2Config.from_dict(model_raw)
    except ValueError as exc:
        raise ValueError(f"{source} [model]: {exc}") from exc
    try:
        train = TrainerConfig(**train_raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} [train]: {exc}") from exc
    try:
        finetune = FinetuneConfig(**finetune_raw)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} [finetune]: {exc}") from exc
    run = RunConfig(
        model, train, DataConfig(**data_raw), source, finetune, tuple(sorted(model_raw)),
        dict(raw["outputs"]) if raw.get("outputs") else None, raw.get("loss") or None,
    )  # fmt: skip
    heads = run.task.model_heads(
        model.heads, model.direct_forces
    )  # validates outputs, loss and data.target
    if heads != model.heads:  # one property head per named target
        try:
            run.model = EquiformerV2Config.from_dict({**model.to_dict(), "heads": heads})
        except ValueError as exc:
            raise ValueError(f"{source} [model]: {exc}") from exc
    return run


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run config and apply ``--set`` overrides."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist (see configs/ for presets).")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc}).") from exc
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: expected a mapping with sections {SECTIONS}.")
    return parse_run_config(apply_overrides(dict(raw), overrides), str(path))
