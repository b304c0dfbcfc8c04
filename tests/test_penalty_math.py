"""Gradient penalties on what D actually judges: per packed input for PacGAN (Lin et al. 2018), and a
conditional D's fakes judged with the labels G drew — on linear critics whose gradients are known by hand."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor, nn

from ganforge import losses
from ganforge.losses import GANLoss
from ganforge.module import GANModule
from ganforge.nets.packing import Packed, samples_per_input
from ganforge.settings import Optimizers
from ganforge.tasks.base import Draw
from ganforge.tasks.generation import GenerationTask


def batch(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- PacGAN: D(x_1, x_2) = w_1·x_1 + w_2·x_2 + b, so ∇ at a packed input is (w_1, w_2) ------------------
W1, W2 = [0.6, -0.8, 2.0], [1.0, 2.0, 2.0]  # ‖w_1‖² = 5, ‖w_2‖² = 9: the packed input's ‖w‖² = 14


def packed_linear(w: list[float]) -> Packed:
    inner = nn.Sequential(nn.Linear(len(w), 1), nn.Flatten(0)).double()
    with torch.no_grad():
        inner[0].weight.copy_(torch.tensor([w], dtype=torch.float64))
        inner[0].bias.fill_(0.5)
    return Packed(inner, 2)


@pytest.mark.parametrize(
    "penalty, want, per_sample",
    [
        # γ/2 · ‖w‖² per packed input; per sample it was γ/2 · mean(5, 9) = γ/2 · 14/pack
        (functools.partial(losses.r1_penalty, gamma=10.0), 5.0 * 14, 5.0 * 7),
        (functools.partial(losses.r2_penalty, gamma=1.0), 0.5 * 14, 0.5 * 7),
        # weight · (‖w‖ - 1)²; per sample it was weight · mean((√5 - 1)², (3 - 1)²)
        (losses.gradient_penalty, 10 * (math.sqrt(14) - 1) ** 2, 10 * ((math.sqrt(5) - 1) ** 2 + 4) / 2),
        (losses.dragan_penalty, 10 * (math.sqrt(14) - 1) ** 2, 10 * ((math.sqrt(5) - 1) ** 2 + 4) / 2),
    ],
    ids=["r1", "r2", "gp", "dragan"],
)
def test_penalties_of_a_linear_packed_critic_take_norms_per_packed_input(penalty, want, per_sample):
    disc = packed_linear(W1 + W2)
    out = penalty(disc, batch((8, 3), 1), batch((8, 3), 2))
    assert out.dim() == 0
    assert out.item() == pytest.approx(want, rel=1e-12)
    assert abs(out.item() - per_sample) > 1.0  # what the per-sample norms gave


def test_gp_of_an_exactly_1_lipschitz_packed_critic_is_zero():
    w = torch.tensor(W1 + W2) / math.sqrt(14)  # ‖w‖ = 1 over the packed input
    out = losses.gradient_penalty(packed_linear(w.tolist()), batch((6, 3), 1), batch((6, 3), 2))
    # per sample it was 10·mean((√(5/14) - 1)², (√(9/14) - 1)²) ≈ 1.0
    assert out.item() == pytest.approx(0.0, abs=1e-12)


class HalfSquare(nn.Module):
    """D(p) = ½‖p‖² of the packed input p: ∇D(p) = p, so the norm is ‖p‖."""

    def forward(self, p: Tensor) -> Tensor:
        return 0.5 * p.pow(2).flatten(1).sum(1)


def test_gp_draws_one_alpha_per_packed_input():
    disc = Packed(HalfSquare(), 2)
    real, fake = batch((6, 3), 1), batch((6, 3), 2)
    torch.manual_seed(5)
    out = losses.gradient_penalty(disc, real, fake, weight=1.0, center=0.0)
    torch.manual_seed(5)
    alpha = torch.rand(3, dtype=torch.float64).repeat_interleave(2).view(6, 1)  # one per pair
    mixed = (alpha * real + (1 - alpha) * fake).reshape(3, 6)  # the packed inputs
    torch.testing.assert_close(out, mixed.norm(dim=1).pow(2).mean(), rtol=1e-12, atol=0)


def test_unpacked_discriminators_take_norms_per_sample():
    assert samples_per_input(nn.Linear(3, 1)) == 1
    assert samples_per_input(packed_linear(W1 + W2)) == 2


# --- a conditional D: D(x, y) = W[y]·x, so ‖∇_x D‖ = ‖W[y]‖ -------------------------------------------
TABLE = [[3.0, 4.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]  # ‖W[y]‖² = 25, 1, 4


class ClassLinearD(nn.Module):
    """A conditional D whose gradient depends on the label; ``acgan`` also returns class logits."""

    def __init__(self, acgan: bool = False) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.tensor(TABLE, dtype=torch.float64))
        self.acgan = acgan

    def forward(self, x: Tensor, y: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        logit = (self.table[y] * x).sum(1)
        return (logit, 7.0 * x[:, :3].pow(2)) if self.acgan else logit


class LabelledG(nn.Module):
    z_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return self.scale * z + y[:, None].to(z.dtype)


Y_REAL, Y_FAKE = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 0, 1, 2])
PENALTIES = {  # name: (penalty, hand value with the real labels Y_REAL / the fake labels Y_FAKE)
    "r1": (functools.partial(losses.r1_penalty, gamma=10.0), 5.0 * (25 + 1 + 4 + 4) / 4),  # real: 42.5
    "r2": (functools.partial(losses.r2_penalty, gamma=10.0), 5.0 * (25 + 25 + 1 + 4) / 4),  # fake: 68.75
    # interpolates are judged with the real sample's label: norms 5, 1, 2, 2
    "gp": (losses.gradient_penalty, 10.0 * (16 + 0 + 1 + 1) / 4),  # 45
    "dragan": (losses.dragan_penalty, 10.0 * (16 + 0 + 1 + 1) / 4),
}


@pytest.mark.parametrize("acgan", [False, True], ids=["projection-like", "acgan"])
@pytest.mark.parametrize("name", list(PENALTIES))
def test_conditional_penalties_through_the_module_use_each_batchs_labels(name, acgan):
    penalty, want = PENALTIES[name]
    loss = GANLoss(losses.nonsaturating_d, losses.nonsaturating_g, penalties={name: penalty})
    task = GenerationTask(num_classes=3, acgan_weight=0.0)  # d_loss - d_adv: the penalty alone
    module = GANModule(LabelledG(), ClassLinearD(acgan), loss, Optimizers(), task=task)
    real, z = batch((4, 3), 1), batch((4, 3), 2)
    d_loss, d_adv, _, _ = module._d_objective((real, Y_REAL), Draw((z, Y_FAKE), Y_FAKE))
    assert (d_loss - d_adv).item() == pytest.approx(want, rel=1e-12)
    # by hand with the labels each batch was judged with: R2 on the fakes with G's labels
    fake = LabelledG()(z, Y_FAKE)
    direct = penalty(ClassLinearD(acgan), real, fake, y_real=Y_REAL, y_fake=Y_FAKE)
    assert direct.item() == pytest.approx(want, rel=1e-12)


# --- penalties under augmentation: the gradient w.r.t. the image before augmentation ---------------
class ImageG(nn.Module):
    z_dim = 3 * 8 * 8

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.scale * z.view(-1, 3, 8, 8))


def small_d() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Softplus(), nn.Flatten(), nn.Linear(64, 1))


@pytest.mark.parametrize("name", ["r1", "r2"])
def test_penalties_under_augmentation_differentiate_at_the_unaugmented_image(name):
    """StyleGAN2-ADA's R1 (loss.py: ``real_img_tmp.requires_grad_()``, the augmentation inside
    ``run_D``): γ/2·E‖∇_x D(A(x))‖² with x the image before augmentation A, written out here with
    autograd and the same augmentation draws; not the gradient at the augmented image A(x)."""
    from ganforge.augment import DiffAugment
    from ganforge.settings import Tricks

    gamma = 10.0
    penalty = functools.partial(losses.r1_penalty if name == "r1" else losses.r2_penalty, gamma=gamma)
    loss = GANLoss(losses.nonsaturating_d, losses.nonsaturating_g, penalties={name: penalty})
    augment = DiffAugment("color", (3, 8, 8))
    module = GANModule(ImageG(), small_d(), loss, Optimizers(), tricks=Tricks(augment=augment))
    torch.manual_seed(0)
    real, z = torch.rand(6, 3, 8, 8) * 2 - 1, torch.randn(6, 3 * 8 * 8)
    draw = Draw((z,), None)
    torch.manual_seed(11)
    d_loss, d_adv, _, _ = module._d_objective((real, torch.zeros(6, dtype=torch.long)), draw)
    # the same draws by hand: the main pass augments the reals, then the fakes; the penalty augments again
    fake, d = ImageG()(z).detach(), small_d()
    torch.manual_seed(11)
    augment(real), augment(fake)
    x = (real if name == "r1" else fake).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(augment(x)).sum(), x)
    reference = gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()
    assert (d_loss - d_adv).item() == pytest.approx(reference.item(), rel=1e-5)
    # what the penalty took before: the gradient at the augmented image, a different number
    torch.manual_seed(11)
    augment(real), augment(fake)
    seen = augment(real if name == "r1" else fake).detach().requires_grad_(True)
    (at_seen,) = torch.autograd.grad(d(seen).sum(), seen)
    before = gamma / 2 * at_seen.flatten(1).pow(2).sum(1).mean()
    assert abs(before.item() - reference.item()) > 0.05 * reference.item()
