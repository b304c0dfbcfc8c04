"""The image history of CycleGAN's discriminator updates (Shrivastava et al. 2017; Zhu et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class ImagePool(nn.Module):
    """Up to ``size`` generated images. A query stores each image while the pool fills and returns it;
    once full, each image in turn is, with probability 1/2, swapped for a stored one drawn uniformly
    (with replacement, as the authors' ``ImagePool``: two images of a batch may draw the same slot,
    and the second then gets the first), else returned as is. The images and the fill count are
    buffers: they are saved in checkpoints, and the draws come from torch's global RNG (also saved),
    so a resumed run queries exactly what the straight run did. No host sync per query."""

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

    def per_rank_state(self) -> dict[str, Tensor]:
        """Under DDP each rank keeps its own history (of its own fakes): saved per rank (GANModule)."""
        return {"images": self.images.detach().cpu().clone(), "count": self.count.detach().cpu().clone()}

    def load_per_rank_state(self, state: dict[str, Tensor] | None) -> None:
        if state is not None:  # None: keep what the state dict gave (rank 0's history)
            self.images.copy_(state["images"])
            self.count.copy_(state["count"])
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
        rest = n - take
        if rest > 0:  # one after another: a slot drawn twice hands the second image the first one
            slots = torch.randint(self.size, (rest,), device=batch.device)
            swap = torch.rand(rest, device=batch.device) < 0.5
            for i in range(rest):
                slot, image = slots[i : i + 1], batch[take + i : take + i + 1]
                stored = self.images.index_select(0, slot)
                out[take + i : take + i + 1] = torch.where(swap[i], stored, image)
                self.images.index_copy_(0, slot, torch.where(swap[i], image, stored))
        return out
