"""TrainingState: the checkpoint's training state, its schema and its checks."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from eqv2.model import EquiformerV2, EquiformerV2Config, Potential
from eqv2.model.loading import save_model
from eqv2.train.trainer import Trainer, TrainerConfig
from eqv2.train.training_state import TRAINING_STATE_KEY, TrainingState
from tests.tiny import tiny


def _frames(n):
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.02 * k)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        out.append(atoms)
    return out


def _trainer(frames, out):
    torch.manual_seed(0)
    cfg = EquiformerV2Config(**tiny(lmax_list=[1], mmax_list=[1], grid_resolution=6,
                                    ffn_hidden_channels=8, max_radius=3.0))  # fmt: skip
    config = TrainerConfig(max_steps=2, max_atoms_per_batch=2, tensorboard=False)
    return Trainer(Potential(EquiformerV2(cfg)), frames, out, config)


def test_state_round_trips_and_wrong_inputs_are_refused(tmp_path):
    trainer = _trainer(_frames(4), tmp_path)
    trainer.fit()
    path = trainer.save()
    state, weights = TrainingState.read(path)
    assert (state.step, state.num_structures, state.world_size) == (2, 4, 1)
    assert state.trainer_config["max_steps"] == 2 and set(weights) == set(
        trainer.model.state_dict()
    )
    assert set(state.to_extra()[TRAINING_STATE_KEY]) == {
        "step", "epoch", "batch_in_epoch", "best_force_mae", "optimizer", "scheduler", "ema",
        "rng", "rng_by_rank", "world_size", "num_structures", "trainer_config", "elapsed_time",
        "clock_reading", "best",
    }  # fmt: skip
    fresh = _trainer(_frames(4), tmp_path / "again")
    fresh.resume(path)
    assert fresh.step == 2
    other = _trainer(_frames(5), tmp_path / "other")
    with pytest.raises(ValueError, match="written while training on 4 structures.*now has 5"):
        other.resume(path)
    plain = save_model(trainer.potential, tmp_path / "final.pt")
    with pytest.raises(ValueError, match="holds no training state"):
        TrainingState.read(plain)
