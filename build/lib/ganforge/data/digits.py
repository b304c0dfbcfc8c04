"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): data that needs no download."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ganforge.data.base import GANDataModule, InMemoryDataset


class DigitsDataModule(GANDataModule):
    """The digits upsampled to ``resolution`` px, one channel, in [-1, 1]."""

    def __init__(self, resolution: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.resolution = resolution
        self.data_shape = (1, resolution, resolution)
        self.num_classes = 10

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        if self.resolution != 8:
            images = F.interpolate(images, size=self.resolution, mode="bilinear", align_corners=False)
        images = images.clamp(0, 1).mul(2).sub(1)
        self.dataset = InMemoryDataset(images.contiguous(), torch.as_tensor(digits.target, dtype=torch.long))
