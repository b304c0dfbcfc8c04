"""Two translators and two discriminators seen as one G and one D, so that CycleGAN (Zhu et al. 2017)
trains in the same alternation loop as every other task: one optimizer over G_AB and G_BA, one over
D_A and D_B. Batches hold domain A's images first, then domain B's, in two equal halves."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def halves(x: Tensor) -> tuple[Tensor, Tensor]:
    """The domain-A and domain-B halves of a batch (A first)."""
    n = x.shape[0] // 2
    return x[:n], x[n:]


class CycleGenerators(nn.Module):
    """G_AB (``ab``: A → B) and G_BA (``ba``: B → A). ``forward(a, b)`` returns the fakes of both
    domains in batch order A, B: ``cat(G_BA(b), G_AB(a))`` — what D judges next to ``cat(a, b)``."""

    z_dim = 0

    def __init__(self, ab: nn.Module, ba: nn.Module) -> None:
        super().__init__()
        self.ab, self.ba = ab, ba

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([self.ba(b), self.ab(a)])


class CycleDiscriminators(nn.Module):
    """D_A (``a``) judges the first half of a batch, D_B (``b``) the second; their logits are
    concatenated in the same order. Training takes each D's loss on its own half and sums them
    (``UnpairedTask.judges``); ``forward`` serves what judges a whole batch (health checks, tests)."""

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Tensor) -> Tensor:
        first, second = halves(x)
        return torch.cat([self.a(first), self.b(second)])
