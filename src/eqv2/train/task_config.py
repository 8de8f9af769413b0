"""Reading a run config's ``outputs`` and ``loss`` sections (and its legacy ``train`` loss keys,
and ``data.target``) into a `eqv2.train.targets_spec.TaskSpec`, in this one place; and the
`TaskSpec` of a trained model (`task_of`), to score it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from eqv2.train.denoising import DenoisingConfig
from eqv2.train.losses import PROPERTY_LOSSES
from eqv2.train.targets_spec import (
    DISPLACEMENT_LOSSES,
    LEGACY_LOSS_KEYS,
    S2EF_LOSSES,
    LossSpec,
    LossTerm,
    TargetSpec,
    TaskSpec,
)

__all__ = ["parse_task", "task_of"]


def _as_mapping(value: Any, where: str) -> dict[str, Any]:
    """``loss`` as ``{name: options}`` (fairchem writes a list of one-key mappings)."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = []
        for entry in value:
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise ValueError(f"{where}: {entry!r}; expected {{name: {{fn: ..., ...}}}}.")
            items.extend(entry.items())
    else:
        raise ValueError(f"{where}: expected a mapping {{name: options}}, got {value!r}.")
    out: dict[str, Any] = {}
    for name, options in items:
        if name in out:
            raise ValueError(f"{where}: {name!r} appears twice.")
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"{where}.{name}: {options!r}; expected a mapping of options.")
        out[str(name)] = dict(options or {})
    return out


def _check_options(options: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; valid: {sorted(known)}.")


def _target(name: str, options: Mapping[str, Any], where: str) -> TargetSpec:
    known = [f.name for f in fields(TargetSpec) if f.name != "name"]
    _check_options(options, known, f"{where}.{name}")
    return TargetSpec(name, **options)


def _selected(target: str | Sequence[str]) -> list[str]:
    names = target.split(",") if isinstance(target, str) else [str(t) for t in target]
    return [n.strip() for n in names if n.strip()]


def parse_task(
    outputs: Any,
    loss: Any,
    train: Any,
    target: str | Sequence[str] | None = None,
    source: str = "<config>",
) -> TaskSpec:
    """The `TaskSpec` of a run config's ``outputs`` and ``loss`` sections, its ``train``
    section (a `TrainerConfig`: its legacy loss keys when the sections are absent, and
    ``free_atoms_only``) and its ``data.target`` selection.

    Raises:
        ValueError: naming the section, the entry and the fix.
    """
    outs = _as_mapping(outputs, f"{source} [outputs]")
    terms = _as_mapping(loss, f"{source} [loss]")
    defaults = type(train)()
    changed = [k for k in LEGACY_LOSS_KEYS if getattr(train, k) != getattr(defaults, k)]
    if (outs or terms) and changed:
        raise ValueError(
            f"{source}: train.{changed[0]} and the outputs/loss sections both set the loss; "
            f"declare it once: move it into loss: (e.g. loss: {{energy: {{coefficient: ...}}}})."
        )
    if not outs and not terms:  # the legacy form: energy + forces (+ stress) from train keys
        outs = {"energy": {}, "forces": {}}
        terms = {"energy": {"fn": train.energy_loss, "coefficient": train.energy_coefficient},
                 "forces": {"fn": "l2mae", "coefficient": train.force_coefficient}}  # fmt: skip
        for part in ("stress_isotropic", "stress_anisotropic"):
            if getattr(train, f"{part}_coefficient") > 0:
                outs[part] = {}
                terms[part] = {"fn": "mae", "coefficient": getattr(train, f"{part}_coefficient")}
    for name in terms:
        outs.setdefault(name, {})
    if target is not None:
        chosen = _selected(target)
        if not chosen:
            raise ValueError(f"{source}: data.target={target!r} names no target.")
        outs = {name: outs.get(name, {}) for name in chosen}
        terms = {name: terms[name] for name in chosen if name in terms}
    return _build(outs, terms, train.free_atoms_only, source, train.loss_spec().denoising)


def _build(
    outs: dict[str, dict[str, Any]],
    terms: dict[str, dict[str, Any]],
    free_atoms_only: bool,
    source: str,
    denoising: DenoisingConfig | None = None,
) -> TaskSpec:
    s2ef_names = [n for n in outs if n in S2EF_LOSSES]
    s2ef = None
    if s2ef_names:
        if "energy" not in outs or "forces" not in outs:
            raise ValueError(
                f"{source} [outputs]: {s2ef_names} without both energy and forces. S2EF "
                "training reads both labels; to train an energy alone, declare it as a named "
                "target (outputs: {total_energy: {key: energy, extensive: true}}), which reads "
                "no forces."
            )
        coefficients: dict[str, float] = {}
        energy_fn = "mae"
        for name in s2ef_names:
            _check_options(outs[name], [], f"{source} [outputs].{name}")
            options = terms.get(name, {})
            _check_options(options, ["fn", "coefficient"], f"{source} [loss].{name}")
            fn = options.get("fn", S2EF_LOSSES[name][0])
            if fn not in S2EF_LOSSES[name]:
                raise ValueError(
                    f"{source} [loss].{name}.fn={fn!r}: choose one of {S2EF_LOSSES[name]}."
                )
            energy_fn = fn if name == "energy" else energy_fn
            coefficients[name] = float(options.get("coefficient", 1.0))
        s2ef = LossSpec(
            coefficients["energy"], coefficients["forces"], energy_fn, free_atoms_only,
            coefficients.get("stress_isotropic", 0.0), coefficients.get("stress_anisotropic", 0.0),
        )  # fmt: skip
    targets, losses = [], []
    for name, options in outs.items():
        if name in S2EF_LOSSES:
            continue
        spec = _target(name, options, f"{source} [outputs]")
        targets.append(spec)
        term = terms.get(name, {})
        known = ["fn", "coefficient", "final_coefficient"]
        _check_options(term, known, f"{source} [loss].{name}")
        allowed = DISPLACEMENT_LOSSES if spec.per_atom else PROPERTY_LOSSES
        if term.get("fn", "mae") not in allowed:
            raise ValueError(
                f"{source} [loss].{name}.fn={term['fn']!r}: choose one of {allowed} for a "
                f"{spec.kind} target."
            )
        losses.append(LossTerm(name, **term))
    try:
        return TaskSpec(s2ef, tuple(targets), tuple(losses), denoising)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc


def task_of(potential: Any) -> TaskSpec:
    """What a trained `eqv2.model.Potential` predicts, as a `TaskSpec` for scoring it: energy
    and forces if it has an energy head, and each property head's target (read under its
    name, in the unit its head declares)."""
    units = potential.units
    targets = tuple(TargetSpec(n, unit=units.get(n)) for n in potential.property_names)
    targets += tuple(
        TargetSpec(n, unit=units.get(n), kind="displacement") for n in potential.vector_names
    )
    return TaskSpec(
        LossSpec() if potential.has_energy else None,
        targets,
        tuple(LossTerm(t.name) for t in targets),
    )
