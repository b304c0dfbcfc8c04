"""CycleGAN's pieces on hand-made tensors: the image pool, the cycle and identity terms, which images
each discriminator sees, and which networks receive gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganforge.losses import GANLoss, lsgan_d, lsgan_g
from ganforge.module import GANModule
from ganforge.nets.cycle import CycleDiscriminators, CycleGenerators
from ganforge.settings import Optimizers, Schedule
from ganforge.tasks.pool import ImagePool
from ganforge.tasks.unpaired import UnpairedTask


# --- the pool ----------------------------------------------------------------------------------------
def images(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1)


def reference_pool_query(stored: list[float], batch: list[float], slots: list[int], swaps: list[bool]):
    """The authors' ImagePool.query (pytorch-CycleGAN-and-pix2pix, util/image_pool.py) on a full pool,
    image by image: with probability 1/2 a slot drawn uniformly WITH replacement hands back its image
    and keeps the new one; here with the draws given."""
    out = []
    for new, slot, swap in zip(batch, slots, swaps, strict=True):
        if swap:
            out.append(stored[slot])
            stored[slot] = new
        else:
            out.append(new)
    return out, stored


def test_pool_fills_then_swaps_as_the_reference() -> None:
    pool = ImagePool(3, (1, 1, 1))
    assert pool.query(images(1, 2)).flatten().tolist() == [1, 2]  # filling: returned as they are
    torch.manual_seed(0)
    out = pool.query(images(3, 4, 5))  # 3 fills the last slot; 4 and 5 meet a full pool
    torch.manual_seed(0)  # the same draws: slots with replacement, then a coin per image
    slots, swaps = torch.randint(3, (2,)).tolist(), (torch.rand(2) < 0.5).tolist()
    expected, stored = reference_pool_query([1.0, 2.0, 3.0], [4.0, 5.0], slots, swaps)
    assert out.flatten().tolist() == [3.0, *expected]
    assert pool.images.flatten().tolist() == stored and int(pool.count) == 3


def test_pool_draws_slots_with_replacement_one_image_after_another() -> None:
    """Two images of a batch that draw the same slot: the second gets the first (the reference's rule;
    distinct slots per batch would hand it the older image)."""
    repeated = 0
    for seed in range(40):
        pool = ImagePool(2, (1, 1, 1))
        pool.query(images(1, 2))
        torch.manual_seed(seed)
        out = pool.query(images(10, 20, 30))
        torch.manual_seed(seed)
        slots, swaps = torch.randint(2, (3,)).tolist(), (torch.rand(3) < 0.5).tolist()
        expected, stored = reference_pool_query([1.0, 2.0], [10.0, 20.0, 30.0], slots, swaps)
        assert out.flatten().tolist() == expected and pool.images.flatten().tolist() == stored, seed
        repeated += any(
            slots[i] == slots[j] and swaps[i] and swaps[j] for i in range(3) for j in range(i + 1, 3)
        )
    assert repeated >= 5  # the case that tells the rules apart did occur


def test_pool_swap_rate_is_one_half_and_capacity_holds() -> None:
    torch.manual_seed(1)
    pool = ImagePool(50, (1, 1, 1))
    pool.query(torch.full((50, 1, 1, 1), -1.0))  # fill with -1
    fresh = torch.arange(1, 10001, dtype=torch.float).view(-1, 1, 1, 1)
    swapped = sum(int((pool.query(chunk) != chunk).sum()) for chunk in fresh.split(10))
    assert pool.images.shape[0] == 50 and int(pool.count) == 50
    assert abs(swapped / 10000 - 0.5) < 0.02


def test_pool_state_is_in_the_state_dict() -> None:
    pool = ImagePool(4, (1, 2, 2))
    pool.query(torch.ones(3, 1, 2, 2))
    again = ImagePool(4, (1, 2, 2))
    again.load_state_dict(pool.state_dict())
    assert int(again.count) == 3 and torch.equal(again.images, pool.images)
    again.query(torch.full((1, 1, 2, 2), 7.0))  # the restored count: the 4th slot fills
    assert again.images[3].eq(7).all() and int(again.count) == 4


# --- the task in the module --------------------------------------------------------------------------
class Scale(nn.Module):
    """A translator x -> w * x + c (two learnable scalars)."""

    z_dim = 0

    def __init__(self, w: float, c: float) -> None:
        super().__init__()
        self.w, self.c = nn.Parameter(torch.tensor(w)), nn.Parameter(torch.tensor(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * x + self.c


class Seen(nn.Module):
    """A D that records its inputs and returns their per-sample means."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.ones(()))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.k * x.mean(dim=(1, 2, 3))


class FakeData:
    """Two-domain data of 1 x side x side images (what ``UnpairedTask.bind`` reads)."""

    unpaired = True

    def __init__(self, side: int = 2) -> None:
        self.data_shape = (1, side, side)

    def num_val_a(self) -> int:
        return 2

    num_val_b = num_val_a

    def val_a(self, idx):
        return torch.zeros(len(idx), *self.data_shape), torch.zeros(len(idx), dtype=torch.long), None

    def val_b(self, idx):
        return torch.ones(len(idx), *self.data_shape), torch.zeros(len(idx), dtype=torch.long)


def cycle_module(cycle: float = 10.0, identity: float = 0.5, pool: int = 0) -> tuple[GANModule, UnpairedTask]:
    task = UnpairedTask(cycle_weight=cycle, identity_weight=identity, pool_size=pool)
    task.bind(FakeData())
    g = CycleGenerators(Scale(2.0, 0.0), Scale(0.5, 1.0))  # G_AB: 2x, G_BA: x/2 + 1
    d = CycleDiscriminators(Seen(), Seen())
    loss = GANLoss(d_loss=lsgan_d, g_loss=lsgan_g)
    return GANModule(g, d, loss, Optimizers(), Schedule(steps=1), task), task


def part(a: float = 1.0, b: float = 4.0) -> tuple[torch.Tensor, ...]:
    labels = torch.zeros(2, dtype=torch.long)
    return torch.full((2, 1, 2, 2), a), torch.full((2, 1, 2, 2), b), labels, labels


def test_cycle_and_identity_terms_on_hand_made_tensors() -> None:
    module, task = cycle_module()
    p = part()  # a = 1, b = 4
    module._g_objective(p, task.draw(p))
    # G_AB(a) = 2, G_BA(2) = 2 -> |2 - 1| = 1;  G_BA(b) = 3, G_AB(3) = 6 -> |6 - 4| = 2
    assert module._g_terms["train/g_cycle"].item() == pytest.approx(3.0)
    # G_BA(a) = 1.5 -> 0.5;  G_AB(b) = 8 -> 4
    assert module._g_terms["train/g_identity"].item() == pytest.approx(4.5)


def test_each_discriminator_sees_only_its_domain() -> None:
    module, task = cycle_module()
    p = part()
    module._d_objective(p, task.draw(p))
    d_a, d_b = module.discriminator.a.seen, module.discriminator.b.seen
    # D_A: real a (1), then fake a = G_BA(b) = 3; D_B: real b (4), then fake b = G_AB(a) = 2
    assert [x.unique().tolist() for x in d_a] == [[1.0], [3.0]]
    assert [x.unique().tolist() for x in d_b] == [[4.0], [2.0]]
    module.discriminator.a.seen.clear()
    module.discriminator.b.seen.clear()
    module._g_objective(p, task.draw(p))  # G's step: D_A judges G_BA(b), D_B judges G_AB(a)
    assert [x.unique().tolist() for x in module.discriminator.a.seen] == [[3.0]]
    assert [x.unique().tolist() for x in module.discriminator.b.seen] == [[2.0]]


def test_both_generators_get_gradients_from_both_cycles_and_only_g_trains_in_g_step() -> None:
    module, task = cycle_module(identity=0.0)
    module.discriminator.requires_grad_(False)  # what toggle_optimizer(opt_g) does
    p = part()
    term = module.task.g_terms(module.generator, p, module.generator(p[0], p[1]))["cycle"].value
    grads = torch.autograd.grad(term, [module.generator.ab.w, module.generator.ba.w])
    assert all(g.abs().item() > 0 for g in grads)
    # the A cycle alone reaches both translators too: G_BA(G_AB(a))
    a = p[0]
    cycle_a = (module.generator.ba(module.generator.ab(a)) - a).abs().mean()
    assert all(
        g.abs().item() > 0
        for g in torch.autograd.grad(cycle_a, [module.generator.ab.w, module.generator.ba.w])
    )
    module._g_objective(p, task.draw(p)).backward()
    assert module.discriminator.a.k.grad is None and module.discriminator.b.k.grad is None
    assert module.generator.ab.w.grad is not None and module.generator.ba.w.grad is not None
    module.generator.zero_grad(set_to_none=True)
    module.discriminator.requires_grad_(True)
    module._d_objective(p, task.draw(p))[0].backward()  # D's step: G ran under no_grad
    assert module.generator.ab.w.grad is None and module.generator.ba.w.grad is None
    assert module.discriminator.a.k.grad is not None and module.discriminator.b.k.grad is not None


def test_d_updates_draw_from_the_pool() -> None:
    module, task = cycle_module(pool=2)
    p = part()
    module._d_objective(p, task.draw(p))  # fills both pools with this step's fakes
    assert int(task.pool_a.count) == 2 and task.pool_a.images.unique().tolist() == [3.0]
    assert task.pool_b.images.unique().tolist() == [2.0]


# --- the objective against the paper's formulas ---------------------------------------------------
def conv_net(out_channels: int, stride: int) -> nn.Module:
    torch.manual_seed(out_channels * 10 + stride)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, out_channels, 3, stride, 1))


def test_cyclegan_losses_are_the_papers_on_hand_made_nets() -> None:
    """G's loss is L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + 10·cycle + 5·identity with the least squares
    L_GAN = E[(D(G(x)) − 1)²] (Zhu et al. 2017, Eq. 3; the authors' backward_G), and D's loss is
    ½(E[(D_A(a) − 1)²] + E[D_A(G_BA(b))²]) + the same for D_B (backward_D_basic): both computed here
    from the four nets, with the preset's loss (loss=lsgan, loss.g_loss.scale=1)."""
    import functools

    g_ab, g_ba, d_a, d_b = conv_net(1, 1), conv_net(1, 1), conv_net(1, 2), conv_net(1, 2)
    for g in (g_ab, g_ba):
        g.z_dim = 0
    task = UnpairedTask(cycle_weight=10.0, identity_weight=0.5, pool_size=0)
    task.bind(FakeData(4))
    loss = GANLoss(d_loss=lsgan_d, g_loss=functools.partial(lsgan_g, scale=1.0))
    nets = CycleGenerators(g_ab, g_ba), CycleDiscriminators(d_a, d_b)
    module = GANModule(*nets, loss, Optimizers(), Schedule(steps=1), task)
    torch.manual_seed(3)
    a, b = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    labels = torch.zeros(3, dtype=torch.long)
    p = (a, b, labels, labels)

    def mse(x, t):
        return ((x - t) ** 2).mean()

    def l1(x, y):
        return (x - y).abs().mean()

    fake_b, fake_a = g_ab(a), g_ba(b)
    g_reference = (
        mse(d_b(fake_b), 1.0)
        + mse(d_a(fake_a), 1.0)
        + 10.0 * (l1(g_ba(fake_b), a) + l1(g_ab(fake_a), b))
        + 10.0 * 0.5 * (l1(g_ba(a), a) + l1(g_ab(b), b))
    )
    d_reference = 0.5 * (mse(d_a(a), 1.0) + mse(d_a(fake_a), 0.0)) + 0.5 * (
        mse(d_b(b), 1.0) + mse(d_b(fake_b), 0.0)
    )
    g_loss = module._g_objective(p, task.draw(p))
    d_loss = module._d_objective(p, task.draw(p))[0]
    assert g_loss.item() == pytest.approx(g_reference.item(), rel=1e-5)
    assert d_loss.item() == pytest.approx(d_reference.item(), rel=1e-5)
    # Mao et al.'s ½ (loss=lsgan as it is): each domain's G term halved, still one term per D, summed
    module.loss = GANLoss(d_loss=lsgan_d, g_loss=lsgan_g)
    module._g_objective(p, task.draw(p))
    half = 0.5 * (mse(d_b(fake_b), 1.0) + mse(d_a(fake_a), 1.0))
    assert module._g_terms["train/g_adv"].item() == pytest.approx(half.item(), rel=1e-5)


def test_cyclegan_presets_use_the_papers_least_squares_scale(tmp_path) -> None:
    from helpers import compose_cfg

    for name in ("cyclegan_digits", "cyclegan_folder", "cyclegan_cifar10_pair"):
        extra = "data.path=x" if name == "cyclegan_folder" else "seed=0"
        cfg = compose_cfg(tmp_path, f"experiment={name}", extra)
        assert cfg.loss.g_loss._target_ == "ganforge.losses.lsgan_g" and cfg.loss.g_loss.scale == 1.0, name
