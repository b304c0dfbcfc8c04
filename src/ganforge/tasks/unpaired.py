"""``task=unpaired``: CycleGAN (Zhu et al. 2017) — G_AB: A → B and G_BA: B → A with D_B and D_A, trained
with the adversarial loss of ``conf/loss`` (the paper's: lsgan), cycle consistency and identity terms,
and D updates from a history of generated images. Deviation from the authors' code: they translate once
per step and update G before the D's; here the D's are updated first (as in every task), then G on a
fresh forward."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ganforge.errors import ConfigError
from ganforge.nets.cycle import halves
from ganforge.tasks.base import Draw, Grid, Task, Term
from ganforge.tasks.pool import ImagePool

DIRECTIONS = ("AtoB", "BtoA")


class UnpairedTask(Task):
    """Loader batches are (a, b, label_a, label_b), A and B drawn independently. G and D are
    :class:`~ganforge.nets.cycle.CycleGenerators` / ``CycleDiscriminators``: one G step updates both
    translators, one D step both discriminators. Each discriminator judges its own domain
    (:meth:`judges`) and the module sums their terms, as the paper's Eq. 3:
    G: L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + λ_cyc·(‖G_BA(G_AB(a)) − a‖₁ + ‖G_AB(G_BA(b)) − b‖₁)
    + λ_cyc·λ_id·(‖G_BA(a) − a‖₁ + ‖G_AB(b) − b‖₁); D: the D loss of D_A plus that of D_B. With the
    paper's least squares loss, L_GAN of G is E[(D(G(x)) − 1)²] (the authors' ``GANLoss('lsgan')``:
    an MSE) and D's is halved (½(E[(D(y) − 1)²] + E[D(G(x))²])): ``loss=lsgan`` with
    ``loss.g_loss.scale=1`` (the CycleGAN presets), where Mao et al.'s G loss has ½."""

    name = "unpaired"
    two_way = True  # the build makes two translators and two discriminators (nets/cycle.py)

    # one G forward per step for D's and G's update, as pix2pix's and CycleGAN's authors' code does
    shares_forward = True

    # D_A judges G_BA's outputs, D_B G_AB's: train/d_adv_a, train/g_adv_ba, train/d_adv_b, train/g_adv_ab
    judge_keys = (("a", "ba"), ("b", "ab"))
    # the titles of a grid's columns: the rows of A's images, then those of B's
    COLUMNS = (("a", "G_AB(a)", "G_BA(G_AB(a))"), ("b", "G_BA(b)", "G_AB(G_BA(b))"))

    def __init__(
        self,
        cycle_weight: float = 10.0,
        identity_weight: float = 0.5,
        pool_size: int = 50,
        grid_examples: int = 4,
    ) -> None:
        super().__init__()
        if cycle_weight < 0 or identity_weight < 0:
            raise ConfigError("task.cycle_weight and task.identity_weight must be non-negative")
        if pool_size < 0:
            raise ConfigError(f"task.pool_size must be non-negative (0: no history), got {pool_size}")
        self.cycle_weight, self.identity_weight = float(cycle_weight), float(identity_weight)
        self.pool_size, self.grid_examples = int(pool_size), int(grid_examples)
        self.register_buffer("fixed_a", torch.zeros(0))
        self.register_buffer("fixed_b", torch.zeros(0))

    def check(self, datamodule: Any) -> None:
        if not getattr(datamodule, "unpaired", False):
            raise ConfigError(
                "task=unpaired needs two-domain data (data=digits_translation, unpaired_folder or "
                f"class_pair), got {type(datamodule).__name__}"
            )

    def bind(self, datamodule: Any) -> None:
        """Image pools of the data's shape; the first held-out images of each domain for the grids."""
        shape = tuple(datamodule.data_shape)
        self.pool_a, self.pool_b = ImagePool(self.pool_size, shape), ImagePool(self.pool_size, shape)
        n = min(self.grid_examples, datamodule.num_val_a(), datamodule.num_val_b())
        self.fixed_a = datamodule.val_a(list(range(n)))[0].clone()
        self.fixed_b = datamodule.val_b(list(range(n)))[0].clone()

    def real(self, part: tuple[Tensor, ...]) -> tuple[Tensor, Tensor | None]:
        return torch.cat([part[0], part[1]]), None

    def draw(self, part: tuple[Tensor, ...]) -> Draw:
        return Draw((part[0], part[1]), None)

    def for_d(self, fake: Tensor) -> Tensor:
        fake_a, fake_b = halves(fake)
        return torch.cat([self.pool_a.query(fake_a), self.pool_b.query(fake_b)])

    def judges(self, discriminator: nn.Module, n: int) -> list[tuple[nn.Module, slice]]:
        """D_A judges the first half of a D batch (domain A), D_B the second."""
        return [(discriminator.a, slice(0, n // 2)), (discriminator.b, slice(n // 2, n))]

    def g_terms(self, net: nn.Module, part: tuple[Tensor, ...], fake: Tensor) -> dict[str, Term]:
        """Cycle and identity terms, each the sum of its A and B parts (logged apart: ``_a``, ``_b``)."""
        a, b = part[0], part[1]
        fake_a, fake_b = halves(fake)  # G_BA(b), G_AB(a)
        cycle_a, cycle_b = (net.ba(fake_b) - a).abs().mean(), (net.ab(fake_a) - b).abs().mean()
        terms = {"cycle": Term(cycle_a + cycle_b, self.cycle_weight, {"a": cycle_a, "b": cycle_b})}
        if self.identity_weight > 0:
            same_a, same_b = (net.ba(a) - a).abs().mean(), (net.ab(b) - b).abs().mean()
            weight = self.cycle_weight * self.identity_weight
            terms["identity"] = Term(same_a + same_b, weight, {"a": same_a, "b": same_b})
        return terms

    def translate(self, net: nn.Module, source: Tensor, direction: str | None = None) -> Tensor:
        direction = direction or "AtoB"
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction={direction}: choose AtoB or BtoA")
        return (net.ab if direction == "AtoB" else net.ba)(source)

    def fixed_draw(self) -> Draw:
        return Draw((self.fixed_a, self.fixed_b), None)

    def grid(self, module: Any) -> Grid:
        """Rows a | G_AB(a) | G_BA(G_AB(a)), then b | G_BA(b) | G_AB(G_BA(b)), for fixed held-out images."""
        rows = []
        for images, there, back in ((self.fixed_a, "AtoB", "BtoA"), (self.fixed_b, "BtoA", "AtoB")):
            moved = module.translate(images, there)
            rows.append(torch.stack([images, moved, module.translate(moved, back)], dim=1).flatten(0, 1))
        grid = torch.cat(rows).float().cpu()
        return Grid(grid, 3, headers=[(0, self.COLUMNS[0]), (len(self.fixed_a), self.COLUMNS[1])])
