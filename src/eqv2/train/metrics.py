"""S2EF evaluation metrics, as OC20 defines them.

* ``energy_mae``: mean |E_pred − E_ref| over structures (eV).
* ``force_mae``: mean |F_pred − F_ref| over force components of the counted atoms (eV/Å).
* ``force_cos``: mean cosine between predicted and reference force vectors of counted atoms.
* ``efwt`` (energy and forces within threshold): fraction of structures with
  |ΔE| < 0.02 eV **and** max |ΔF| component < 0.03 eV/Å over counted atoms.

OC20 counts only free atoms (not fixed); ``free_atoms_only=False`` counts all atoms. Metrics are
accumulated over batches with `MetricAccumulator`, so a whole split never has to sit in memory.

Stress metrics (`StressAccumulator`), as fairchem's OMat24 configs report them, in eV/Å³
(ASE's sign), over the structures that have a stress label:

* ``stress_mae``: mean |σ_pred − σ_ref| over the 9 components of every structure (and
  ``stress_mae_gpa``, the same in GPa);
* ``stress_isotropic_mae``: mean |Δ iso| over structures, with ``iso = tr σ/√3`` the l=0 part
  a stress head predicts (the pressure error is this divided by √3);
* ``stress_anisotropic_mae``: mean |Δ a| over the 5 l=2 components of every structure.

Named per-structure targets (`PropertyAccumulator`), in each target's unit: ``<name>_mae``
and ``<name>_rmse`` over structures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase.units import GPa

from eqv2.so3.rank2 import rank2_to_irreps

#: OC20's EFwT thresholds.
EFWT_ENERGY_THRESHOLD = 0.02
EFWT_FORCE_THRESHOLD = 0.03


@dataclass
class MetricAccumulator:
    """Running sums for `energy_mae`, `force_mae`, `force_cos` and `efwt` over batches."""

    free_atoms_only: bool = True
    _sums: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("energy_abs", "force_abs", "force_cos", "efwt"), 0.0)
    )
    _counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("structures", "components", "atoms"), 0)
    )

    def update(
        self,
        energy_pred: torch.Tensor,
        energy_ref: torch.Tensor,
        forces_pred: torch.Tensor,
        forces_ref: torch.Tensor,
        batch: torch.Tensor,
        fixed: torch.Tensor | None = None,
    ) -> None:
        """Add one batch: energies (B,), forces (N, 3), ``batch`` (N,) structure index,
        ``fixed`` (N,) bool (ignored when ``free_atoms_only`` is False)."""
        e_pred = energy_pred.detach().double().cpu()
        e_ref = energy_ref.detach().double().cpu()
        f_pred = forces_pred.detach().double().cpu()
        f_ref = forces_ref.detach().double().cpu()
        batch = batch.detach().cpu().long()
        keep = torch.ones(len(batch), dtype=torch.bool)
        if self.free_atoms_only and fixed is not None:
            keep = ~fixed.detach().cpu().bool()
        num = len(e_pred)
        d_e = (e_pred - e_ref).abs()
        d_f = (f_pred - f_ref).abs()[keep]
        self._sums["energy_abs"] += float(d_e.sum())
        self._sums["force_abs"] += float(d_f.sum())
        cos = torch.nn.functional.cosine_similarity(f_pred[keep], f_ref[keep], dim=1, eps=1e-12)
        self._sums["force_cos"] += float(cos.sum())
        # worst force component per structure over counted atoms (0 if none counted)
        worst = torch.zeros(num, dtype=torch.float64)
        if d_f.numel():
            worst = worst.scatter_reduce(0, batch[keep], d_f.amax(dim=1), "amax", include_self=True)
        within = (d_e < EFWT_ENERGY_THRESHOLD) & (worst < EFWT_FORCE_THRESHOLD)
        self._sums["efwt"] += float(within.sum())
        self._counts["structures"] += num
        self._counts["components"] += d_f.numel()
        self._counts["atoms"] += int(keep.sum())

    def totals(self) -> torch.Tensor:
        """The running sums and counts as one float64 vector, to add up across processes."""
        return torch.tensor([*self._sums.values(), *self._counts.values()], dtype=torch.float64)

    def set_totals(self, totals: torch.Tensor) -> None:
        """Replace the running sums and counts by ``totals`` (a vector laid out as `totals`)."""
        values = totals.detach().double().cpu().tolist()
        if len(values) != len(self._sums) + len(self._counts):
            raise ValueError(f"expected {len(self._sums) + len(self._counts)} totals.")
        for key, value in zip(self._sums, values, strict=False):
            self._sums[key] = value
        for key, value in zip(self._counts, values[len(self._sums) :], strict=True):
            self._counts[key] = round(value)

    def compute(self) -> dict[str, float]:
        """``{"energy_mae", "force_mae", "force_cos", "efwt", "n_structures"}``."""
        s, c = self._sums, self._counts
        nan = float("nan")
        return {
            "energy_mae": s["energy_abs"] / c["structures"] if c["structures"] else nan,
            "force_mae": s["force_abs"] / c["components"] if c["components"] else nan,
            "force_cos": s["force_cos"] / c["atoms"] if c["atoms"] else nan,
            "efwt": s["efwt"] / c["structures"] if c["structures"] else nan,
            "n_structures": c["structures"],
        }


@dataclass
class StressAccumulator:
    """Running sums for the stress metrics (see the module docstring) over batches."""

    _sums: np.ndarray = field(default_factory=lambda: np.zeros(4))  # |Δσ|, |Δiso|, |Δa|, n

    def update(self, stress_pred: torch.Tensor, stress_ref: torch.Tensor) -> None:
        """Add one batch's stresses (B, 3, 3) in eV/Å³; structures whose reference is NaN
        (no stress label) are left out."""
        ref = stress_ref.detach().double().cpu()
        pred = stress_pred.detach().double().cpu()
        keep = torch.isfinite(ref).flatten(1).all(dim=1)
        ref, pred = ref[keep], pred[keep]
        iso_p, aniso_p = rank2_to_irreps(pred)
        iso_r, aniso_r = rank2_to_irreps(ref)
        self._sums += [
            float((pred - ref).abs().sum()),
            float((iso_p - iso_r).abs().sum()),
            float((aniso_p - aniso_r).abs().sum()),
            int(keep.sum()),
        ]

    def totals(self) -> torch.Tensor:
        """The running sums and count as one float64 vector, to add up across processes."""
        return torch.tensor(self._sums, dtype=torch.float64)

    def set_totals(self, totals: torch.Tensor) -> None:
        """Replace the running sums by ``totals`` (a vector laid out as `totals`)."""
        values = totals.detach().double().cpu().numpy()
        if values.shape != (4,):
            raise ValueError(f"expected 4 totals, got {values.shape}.")
        self._sums = values.copy()

    def compute(self) -> dict[str, float]:
        """``stress_mae``, ``stress_mae_gpa``, ``stress_isotropic_mae``,
        ``stress_anisotropic_mae`` and ``n_stress``; empty without stress labels."""
        stress, iso, aniso, n = self._sums
        if n == 0:
            return {}
        return {
            "stress_mae": stress / (9 * n),
            "stress_mae_gpa": stress / (9 * n) / GPa,
            "stress_isotropic_mae": iso / n,
            "stress_anisotropic_mae": aniso / (5 * n),
            "n_stress": round(n),
        }


@dataclass
class PropertyAccumulator:
    """Running sums of |error| and error² of named targets over batches: per structure, or,
    for the ``per_atom`` names (displacements), per component of the free atoms."""

    names: tuple[str, ...] = ()
    per_atom: tuple[str, ...] = ()
    _sums: np.ndarray = field(init=False)  # per name: Σ|Δ|, ΣΔ², count

    def __post_init__(self) -> None:
        self.names = tuple(self.names)
        self._sums = np.zeros(3 * len(self.names))

    def update(
        self,
        pred: dict[str, torch.Tensor],
        ref: dict[str, torch.Tensor],
        fixed: torch.Tensor | None = None,
    ) -> None:
        """Add one batch: predicted and reference values of every name ((B,), or (N, 3) for
        per-atom names, whose ``fixed`` (N,) atoms are left out)."""
        for k, name in enumerate(self.names):
            d = pred[name].detach().double().cpu() - ref[name].detach().double().cpu()
            if name in self.per_atom and fixed is not None:
                d = d[~fixed.detach().cpu().bool()]
            d = d.reshape(-1)
            self._sums[3 * k : 3 * k + 3] += [float(d.abs().sum()), float((d * d).sum()), d.numel()]

    def totals(self) -> torch.Tensor:
        """The running sums and counts as one float64 vector, to add up across processes."""
        return torch.tensor(self._sums, dtype=torch.float64)

    def set_totals(self, totals: torch.Tensor) -> None:
        """Replace the running sums by ``totals`` (a vector laid out as `totals`)."""
        values = totals.detach().double().cpu().numpy()
        if values.shape != self._sums.shape:
            raise ValueError(f"expected {self._sums.shape[0]} totals, got {values.shape}.")
        self._sums = values.copy()

    def compute(self) -> dict[str, float]:
        """``<name>_mae`` and ``<name>_rmse`` per name, and ``n_structures`` (the count of the
        first per-structure name); empty without names."""
        out: dict[str, float] = {}
        for k, name in enumerate(self.names):
            total, squares, n = self._sums[3 * k : 3 * k + 3]
            out[f"{name}_mae"] = float(total / n) if n else float("nan")
            out[f"{name}_rmse"] = float(np.sqrt(squares / n)) if n else float("nan")
        scalars = [k for k, name in enumerate(self.names) if name not in self.per_atom]
        if scalars:
            out["n_structures"] = round(self._sums[3 * scalars[0] + 2])
        return out


def s2ef_metrics(
    energy_pred: np.ndarray | torch.Tensor,
    energy_ref: np.ndarray | torch.Tensor,
    forces_pred: np.ndarray | torch.Tensor,
    forces_ref: np.ndarray | torch.Tensor,
    batch: np.ndarray | torch.Tensor,
    fixed: np.ndarray | torch.Tensor | None = None,
    free_atoms_only: bool = True,
) -> dict[str, float]:
    """All S2EF metrics for one set of predictions (see the module docstring)."""
    acc = MetricAccumulator(free_atoms_only=free_atoms_only)
    acc.update(
        *(torch.as_tensor(v) for v in (energy_pred, energy_ref, forces_pred, forces_ref, batch)),
        None if fixed is None else torch.as_tensor(fixed),
    )
    return acc.compute()


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per split, columns as OC20 reports them."""
    stress = any("stress_mae" in m for m in metrics.values())
    header = f"{'split':<10} {'n':>6} {'energy MAE (eV)':>16} {'force MAE (eV/Å)':>17} "
    header += f"{'force cos':>10} {'EFwT':>7}"
    if stress:
        header += f" {'stress MAE (GPa)':>17} {'iso MAE (eV/Å³)':>16} {'aniso MAE (eV/Å³)':>18}"
    lines = [header, "-" * len(header)]
    if not any("energy_mae" in m for m in metrics.values()):  # named targets only
        names = [k[:-4] for k in next(iter(metrics.values()), {}) if k.endswith("_mae")]
        header = f"{'split':<10} {'n':>6} " + " ".join(f"{n + ' MAE':>14}" for n in names)
        lines = [header, "-" * len(header)]
        for split, m in metrics.items():
            values = " ".join(f"{m.get(n + '_mae', float('nan')):>14.5g}" for n in names)
            lines.append(f"{split:<10} {m.get('n_structures', 0):>6d} {values}")
        return "\n".join(lines)
    for split, m in metrics.items():
        line = (
            f"{split:<10} {m['n_structures']:>6d} {m['energy_mae']:>16.4f} "
            f"{m['force_mae']:>17.4f} {m['force_cos']:>10.4f} {m['efwt']:>7.1%}"
        )
        if "stress_mae" in m:
            line += (
                f" {m['stress_mae_gpa']:>17.4f} {m['stress_isotropic_mae']:>16.5f} "
                f"{m['stress_anisotropic_mae']:>18.5f}"
            )
        lines.append(line)
    return "\n".join(lines)
