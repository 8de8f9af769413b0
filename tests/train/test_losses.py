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
    assert {k: v.item() for k, v in parts.items()} == {"energy_loss": 1.0, "force_loss": 5.0}
    assert not any(v.requires_grad for v in parts.values())
    total.backward()
    assert e.grad.item() == pytest.approx(2.0)


def test_denominators_split_a_batch_into_parts_that_add_up():
    """Two processes' losses over the whole batch's counts add up to the whole batch's loss."""
    gen = torch.Generator().manual_seed(0)
    e_pred, e_ref = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    f_pred, f_ref = torch.randn(12, 3, generator=gen), torch.randn(12, 3, generator=gen)
    natoms = torch.tensor([2, 3, 2, 4, 1])
    fixed = torch.zeros(12, dtype=torch.bool)
    fixed[[0, 4, 5, 9]] = True
    whole, _ = s2ef_loss({"energy": e_pred, "forces": f_pred}, e_ref, f_ref, natoms, fixed,
                         2.0, 3.0, "per_atom_mae")  # fmt: skip
    parts = []
    for structures, atoms in (([0, 1], slice(0, 5)), ([2, 3, 4], slice(5, 12))):
        loss, _ = s2ef_loss({"energy": e_pred[structures], "forces": f_pred[atoms]},
                            e_ref[structures], f_ref[atoms], natoms[structures], fixed[atoms],
                            2.0, 3.0, "per_atom_mae", num_structures=5,
                            num_force_atoms=int((~fixed).sum()))  # fmt: skip
        parts.append(loss)
    assert (parts[0] + parts[1]).item() == pytest.approx(whole.item(), rel=1e-6)
    assert force_l2mae(f_pred, f_ref, denominator=0).item() == 0.0
