"""Direct → conservative fine-tuning (eqv2 train --init with model.direct_forces: false)."""

from __future__ import annotations

import pytest
import torch
import yaml
from ase.io import write

import eqv2
from eqv2.cli import main
from eqv2.data.generate import generate_dataset
from eqv2.model import EquiformerV2Config
from eqv2.model.loading import save_model
from eqv2.train.finetune import merge_model_config, start_finetune
from eqv2.train.run_config import parse_run_config
from tests.tiny import TINY_MODEL, fitted_potential

DIRECT = dict(**TINY_MODEL, max_radius=4.5, max_neighbors=12, alpha_drop=0.0, drop_path_rate=0.0)
TRAIN = dict(lr=2e-3, warmup_steps=0, max_atoms_per_batch=100_000, ema_decay=None,
             force_coefficient=10.0, checkpoint_every=1000, eval_every=1000)  # fmt: skip


@pytest.fixture(scope="module")
def frames():
    """EMT-labelled Cu slab frames (the generator's relaxation and rattled frames)."""
    ds = generate_dataset(1, seed=7, relax_steps=2, rattle_frames=1, sizes=((2, 2),), layers=(3,))
    return ds.s2ef_frames[:3]


@pytest.fixture(scope="module")
def direct(frames, tmp_path_factory):
    """A direct-force tiny model (random weights, fitted targets) saved as final.pt."""
    out = tmp_path_factory.mktemp("direct")
    pot = fitted_potential(frames, DIRECT)
    save_model(pot, out / "final.pt")
    write(out / "train.extxyz", frames)
    return out


def _conservative_run(direct_dir):
    raw = {
        "model": {"direct_forces": False},
        "train": {"max_steps": 2, **TRAIN},
        "data": {"train": str(direct_dir / "train.extxyz")},
        "finetune": {"init_from": str(direct_dir / "final.pt")},
    }
    return parse_run_config(raw, "conservative.yaml")


def test_drops_the_force_head_and_keeps_every_other_weight(direct, frames, tmp_path):
    potential, resolved = start_finetune(_conservative_run(direct), frames, tmp_path)
    assert resolved.model.direct_forces is False and potential.conservative
    original = eqv2.load_model(direct / "final.pt").model.state_dict()
    mine = potential.model.state_dict()
    assert set(original) - set(mine) == {k for k in original if k.startswith("force_block.")}
    assert set(mine) <= set(original)
    for name, value in mine.items():
        torch.testing.assert_close(value, original[name], rtol=0, atol=0, msg=name)


def test_conservative_forces_are_minus_the_energy_gradient(direct, frames, tmp_path):
    """Central differences of the fine-tuned model's energy (float64, Richardson-extrapolated
    from steps h and h/2) equal its forces."""
    potential, _ = start_finetune(_conservative_run(direct), frames, tmp_path)
    potential = potential.double().eval()
    atoms = frames[0].copy()
    forces = potential(potential.build_graph([atoms]))["forces"].detach()

    def derivative(atom: int, axis: int, h: float) -> float:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            with torch.no_grad():
                energies.append(potential(potential.build_graph([moved]))["energy"].item())
        return (energies[0] - energies[1]) / (2 * h)

    for atom, axis in ((0, 0), (3, 2), (len(atoms) - 1, 1)):
        h = 2e-4
        numeric = -(4 * derivative(atom, axis, h / 2) - derivative(atom, axis, h)) / 3
        assert abs(numeric - forces[atom, axis].item()) < 1e-7


def test_the_other_direction_is_refused():
    conservative = EquiformerV2Config(**{**DIRECT, "direct_forces": False})
    run = EquiformerV2Config(**DIRECT)  # direct_forces: true
    with pytest.raises(ValueError, match="model.direct_forces=True.*direct_forces may go from"):
        merge_model_config(run, ["direct_forces"], conservative, "x.yaml", "c.pt")


def test_fairchem_style_heads_lose_their_force_head():
    heads = {"energy": {"module": "equiformer_v2_energy_head"},
             "forces": {"module": "equiformer_v2_force_head"}}  # fmt: skip
    checkpoint = EquiformerV2Config(**{**DIRECT, "heads": heads})
    run = EquiformerV2Config(**{**DIRECT, "direct_forces": False})
    merged = merge_model_config(run, ["direct_forces"], checkpoint, "x.yaml", "c.pt")
    assert merged.heads == {"energy": {"module": "equiformer_v2_energy_head"}}
    assert not merged.direct_forces


def test_cli_conservative_finetune_runs(direct, tmp_path, capsys):
    config = tmp_path / "conservative.yaml"
    config.write_text(yaml.safe_dump({"model": {"direct_forces": False},
                                      "train": {"max_steps": 2, **TRAIN}}))  # fmt: skip
    out = tmp_path / "run"
    code = main(["train", str(config), "--train", str(direct / "train.extxyz"), "--out", str(out),
                 "--init-from", str(direct / "final.pt"), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    trained = eqv2.load_model(out / "final.pt")
    assert trained.conservative and trained.config.direct_forces is False
