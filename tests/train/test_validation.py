"""eqv2.train.validation: the in-training check agrees with the after-training scoring, and each
set's loader is kept until closed."""

from __future__ import annotations

import pytest
import torch
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from eqv2.train.distributed import DistributedEnv
from eqv2.train.evaluation import score_split
from eqv2.train.loader import GraphSettings, LoaderConfig, StepReader
from eqv2.train.targets_spec import TaskSpec
from eqv2.train.validation import Validation
from tests.tiny import TINY_MODEL, fitted_potential, tiny_structures

#: two compositions cannot pin three element references; the scores do not depend on them
pytestmark = pytest.mark.filterwarnings("ignore:Linear energy references")


@pytest.fixture(scope="module")
def frames():
    """The tiny structures with EMT energies and forces, as labels."""
    out = []
    for k, atoms in enumerate(tiny_structures() * 2):
        atoms = atoms.copy()
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        out.append(atoms)
    return out


def _validation(potential) -> Validation:
    refs = potential.element_references.cpu().numpy()
    settings = GraphSettings.of(potential)
    return Validation(
        lambda data: StepReader(data, settings, refs, "val", "ignore"),
        TaskSpec(),
        LoaderConfig(num_workers=0),
        torch.device("cpu"),
        DistributedEnv.current(),
        seed=0,
    )


def test_metrics_equal_score_split_and_loaders_are_kept(frames):
    potential = fitted_potential(frames, {**TINY_MODEL, "max_radius": 5.0}).double()
    validation = _validation(potential)
    metrics = validation.metrics(potential, frames, batch_structures=3)
    want = score_split(
        potential, frames, name="val", train_mean_energy=0.0, batch_structures=3,
        loader=LoaderConfig(num_workers=0),
    ).metrics  # fmt: skip
    assert metrics.keys() == want.keys() and metrics["n_structures"] == len(frames)
    for key, value in want.items():
        assert metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert metrics["force_mae"] > 0
    assert not potential.training  # scored in eval mode
    # the same set at the same batch size reuses its loader; another batch size gets its own
    loader = validation.loader(frames, 3)
    assert validation.loader(frames, 3) is loader
    assert validation.loader(frames, 2) is not loader
    validation.close()
    assert validation.loader(frames, 3) is not loader
