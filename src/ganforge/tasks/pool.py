"""The image history of CycleGAN's discriminator updates (Shrivastava et al. 2017; Zhu et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class ImagePool(nn.Module):
    """Up to ``size`` generated images. A query stores each image while the pool fills and returns it;
    once full, each image is, with probability 1/2, swapped for a stored one (returned instead, the
    new image stored in its place), else returned as is. The images and the fill count are buffers:
    they are saved in checkpoints, and the draws come from torch's global RNG (also saved), so a
    resumed run queries exactly what the straight run did. No host sync per query."""

    def __init__(self, size: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"the pool size must be non-negative, got {size}")
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.filled: int | None = 0  # the count as a Python int (None: read it from the buffer once)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.filled = None

    @torch.no_grad()
    def query(self, batch: Tensor) -> Tensor:
        """What D sees in place of ``batch`` (detached)."""
        batch = batch.detach()
        if self.size == 0:
            return batch
        if self.filled is None:
            self.filled = int(self.count)
        out = batch.clone()
        n = batch.shape[0]
        take = min(n, self.size - self.filled)  # the first images fill the pool and come back as they are
        if take > 0:
            self.images[self.filled : self.filled + take] = batch[:take]
            self.filled += take
            self.count.fill_(self.filled)
        start = take
        for rest in batch[take:].split(self.size):  # distinct slots per chunk: swaps act one after another
            slots = torch.randperm(self.size, device=batch.device)[: len(rest)]
            swap = torch.rand(len(rest), device=batch.device) < 0.5
            stored = self.images[slots]
            mask = swap.view(-1, *([1] * (batch.dim() - 1)))
            out[start : start + len(rest)] = torch.where(mask, stored, rest)
            self.images[slots] = torch.where(mask, rest, stored)
            start += len(rest)
        return out
