"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): data that needs no download."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.data.base import GANDataModule, InMemoryDataset
from ganforge.errors import ConfigError
from ganforge.memory import check_room


class DigitsDataModule(GANDataModule):
    """The digits upsampled to ``resolution`` px, one channel, in [-1, 1]; ``limit``: only that many of
    them (a fixed random subset, the same for every seed: limited-data studies); the others are then the
    held-out items (:meth:`~ganforge.data.base.GANDataModule.held_out_items`), all 1,797 the population."""

    def __init__(self, resolution: int = 16, limit: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if limit is not None and limit < 1:
            raise ConfigError(f"data.limit must be a positive number of images, got {limit}")
        self.resolution = resolution
        self.limit = limit
        self.data_shape = (1, resolution, resolution)
        self.num_classes = 10

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        # held in memory as float32: a resolution too large for that is one line, not an allocation error
        check_room(
            "data.resolution",
            self.resolution,
            images.shape[0] * 4 * self.resolution**2,
            "the digits at this resolution",
        )
        if self.resolution != 8:
            images = F.interpolate(images, size=self.resolution, mode="bilinear", align_corners=False)
        images = images.clamp(0, 1).mul(2).sub(1)
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        if self.limit is not None and self.limit < len(images):
            order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
            keep, rest = order[: self.limit].sort().values, order[self.limit :].sort().values
            self.held_out = InMemoryDataset(images[rest].contiguous(), labels[rest])
            self.population = InMemoryDataset(images.contiguous(), labels)
            images, labels = images[keep], labels[keep]
        self.dataset = InMemoryDataset(images.contiguous(), labels)
