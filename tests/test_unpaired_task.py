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


def test_pool_fills_then_swaps_with_probability_one_half_as_hand_checked() -> None:
    pool = ImagePool(3, (1, 1, 1))
    assert pool.query(images(1, 2)).flatten().tolist() == [1, 2]  # filling: returned as they are
    torch.manual_seed(0)
    out = pool.query(images(3, 4, 5))  # 3 fills the last slot; 4 and 5 meet a full pool
    # the same draws by hand: distinct slots, then a coin per image (swap below 1/2)
    torch.manual_seed(0)
    slots = torch.randperm(3)[:2].tolist()
    swap = (torch.rand(2) < 0.5).tolist()
    stored = [1.0, 2.0, 3.0]
    expected = [3.0]
    for new, slot, s in zip([4.0, 5.0], slots, swap, strict=True):
        expected.append(stored[slot] if s else new)
        if s:
            stored[slot] = new
    assert out.flatten().tolist() == expected
    assert pool.images.flatten().tolist() == stored and int(pool.count) == 3


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
    data_shape = (1, 2, 2)
    unpaired = True

    def num_val_a(self) -> int:
        return 2

    num_val_b = num_val_a

    def val_a(self, idx):
        return torch.zeros(len(idx), 1, 2, 2), torch.zeros(len(idx), dtype=torch.long), None

    def val_b(self, idx):
        return torch.ones(len(idx), 1, 2, 2), torch.zeros(len(idx), dtype=torch.long)


def cycle_module(cycle: float = 10.0, identity: float = 0.5, pool: int = 0) -> tuple[GANModule, UnpairedTask]:
    task = UnpairedTask(cycle_weight=cycle, identity_weight=identity, pool_size=pool)
    task.bind(FakeData(), 4, 0)
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
    module._g_objective(p, task.draw(module, p))
    # G_AB(a) = 2, G_BA(2) = 2 -> |2 - 1| = 1;  G_BA(b) = 3, G_AB(3) = 6 -> |6 - 4| = 2
    assert module._g_terms["train/g_cycle"].item() == pytest.approx(3.0)
    # G_BA(a) = 1.5 -> 0.5;  G_AB(b) = 8 -> 4
    assert module._g_terms["train/g_identity"].item() == pytest.approx(4.5)


def test_each_discriminator_sees_only_its_domain() -> None:
    module, task = cycle_module()
    p = part()
    module._d_objective(p, task.draw(module, p))
    d_a, d_b = module.discriminator.a.seen, module.discriminator.b.seen
    # D_A: real a (1), then fake a = G_BA(b) = 3; D_B: real b (4), then fake b = G_AB(a) = 2
    assert [x.unique().tolist() for x in d_a] == [[1.0], [3.0]]
    assert [x.unique().tolist() for x in d_b] == [[4.0], [2.0]]
    module.discriminator.a.seen.clear()
    module.discriminator.b.seen.clear()
    module._g_objective(p, task.draw(module, p))  # G's step: D_A judges G_BA(b), D_B judges G_AB(a)
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
    module._g_objective(p, task.draw(module, p)).backward()
    assert module.discriminator.a.k.grad is None and module.discriminator.b.k.grad is None
    assert module.generator.ab.w.grad is not None and module.generator.ba.w.grad is not None
    module.generator.zero_grad(set_to_none=True)
    module.discriminator.requires_grad_(True)
    module._d_objective(p, task.draw(module, p))[0].backward()  # D's step: G ran under no_grad
    assert module.generator.ab.w.grad is None and module.generator.ba.w.grad is None
    assert module.discriminator.a.k.grad is not None and module.discriminator.b.k.grad is not None


def test_d_updates_draw_from_the_pool() -> None:
    module, task = cycle_module(pool=2)
    p = part()
    module._d_objective(p, task.draw(module, p))  # fills both pools with this step's fakes
    assert int(task.pool_a.count) == 2 and task.pool_a.images.unique().tolist() == [3.0]
    assert task.pool_b.images.unique().tolist() == [2.0]
