"""A corrupt record in the middle of an LMDB stops training with an error naming the file, the
structure and the record key, through DataLoader worker processes, never a hung worker."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from eqv2.cli.main import main
from eqv2.data import DataError, from_atoms, open_dataset, to_atoms
from eqv2.train.loader import LoaderConfig
from eqv2.train.trainer import Trainer, TrainerConfig
from tests.cli.test_train_cli import TINY_YAML
from tests.data.oc20_writer import oc20_fields, pickle_record, write_oc20_lmdb
from tests.simulate.relax.tiny_relax import generated_systems
from tests.tiny import TINY_MODEL, fitted_potential

#: the shard and structure cut in half: structure 4 of the directory is b"1" of b.lmdb
CUT = ("b.lmdb", 4, b"1")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """Six labelled slabs in two OC20 LMDB shards; the fifth record is truncated."""
    records = []
    for k, atoms in enumerate(generated_systems(6)):
        rng = np.random.default_rng(k)
        atoms.calc = SinglePointCalculator(
            atoms, energy=-1.0 - 0.1 * k, forces=rng.normal(0.0, 0.1, (len(atoms), 3))
        )
        records.append(pickle_record(oc20_fields(from_atoms(atoms, index=k)), layout=2))
    records[4] = records[4][: len(records[4]) // 2]
    root = tmp_path_factory.mktemp("shards")
    write_oc20_lmdb(root / "a.lmdb", records[:3])
    write_oc20_lmdb(root / "b.lmdb", records[3:])
    with pytest.warns(UserWarning, match="1 record"):  # the index notes it, once
        open_dataset(root)
    return root


@pytest.fixture(autouse=True)
def deadline():
    """A hung DataLoader worker fails the test instead of hanging the suite."""

    def hung(signum, frame):  # noqa: ANN001
        pytest.fail("training did not stop within 300 s: a DataLoader worker hangs")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(300)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _named(text: str, root: Path) -> bool:
    name, index, key = CUT
    return f"{root / name}, structure {index} (record key {key!r})" in text and "truncated" in text


@pytest.mark.slow  # a training run's set-up with two DataLoader worker processes
def test_eqv2_train_names_the_corrupt_record(shards, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    argv = ["train", str(config), "--train", str(shards), "--out", str(tmp_path / "run"),
            "--no-progress", "--set", "data.num_workers=2"]  # fmt: skip
    assert main(argv) == 2
    assert _named(capsys.readouterr().err, shards)


@pytest.mark.filterwarnings("ignore:Linear energy references")  # a few slabs: rank-deficient
@pytest.mark.parametrize("workers", [0, 2])
def test_training_steps_name_the_corrupt_record(shards, tmp_path, workers):
    """Past the target fit (normalisers given): the step's reader meets the record."""
    dataset = open_dataset(shards)
    good = [to_atoms(dataset[i]) for i in range(len(dataset)) if i != CUT[1]]
    potential = fitted_potential(good, dict(TINY_MODEL, max_radius=4.5, max_neighbors=12))
    config = TrainerConfig(max_steps=6, max_atoms_per_batch=80, tensorboard=False,
                           device="cpu", eval_every=100, checkpoint_every=100)  # fmt: skip
    trainer = Trainer(potential.to(torch.float32), dataset, tmp_path, config,
                      loader=LoaderConfig(num_workers=workers))  # fmt: skip
    with pytest.raises(DataError) as info:
        trainer.fit()  # six steps of at least one structure each: structure 4 comes up
    assert _named(str(info.value), shards), str(info.value)
