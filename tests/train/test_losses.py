import pytest
import torch

from eqv2.train.losses import energy_loss, force_l2mae, s2ef_loss


def test_force_l2mae_counts_free_atoms():
    pred = torch.tensor([[3.0, 4.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.zeros(3, 3)
    assert force_l2mae(pred, target).item() == pytest.approx((5 + 1 + 0) / 3)
    mask = torch.tensor([True, False, True])
    assert force_l2mae(pred, target, mask).item() == pytest.approx(2.5)
    assert force_l2mae(pred, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0


def test_energy_losses():
    pred, target, natoms = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([1, 4])
    assert energy_loss(pred, target, natoms).item() == pytest.approx(1.5)
    assert energy_loss(pred, target, natoms, "per_atom_mae").item() == pytest.approx(0.75)
    assert energy_loss(pred, target, natoms, "mse").item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="energy loss 'l1'"):
        energy_loss(pred, target, natoms, "l1")


def test_combined_loss_weights_and_gradients():
    e = torch.tensor([1.0], requires_grad=True)
    f = torch.tensor([[0.0, 3.0, 4.0]], requires_grad=True)
    total, parts = s2ef_loss(
        {"energy": e, "forces": f}, torch.zeros(1), torch.zeros(1, 3), torch.tensor([1]),
        energy_coefficient=2.0, force_coefficient=10.0,
    )  # fmt: skip
    assert total.item() == pytest.approx(2 * 1 + 10 * 5)
    assert parts == {"energy_loss": 1.0, "force_loss": 5.0}
    total.backward()
    assert e.grad.item() == pytest.approx(2.0)
