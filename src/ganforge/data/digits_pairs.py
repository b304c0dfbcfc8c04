"""The pairs (a, T(a)) of ``data=digits_translation``'s domain A: the same benchmark with pairs, for
the paired upper bound (pix2pix, ``task=paired``) of the CycleGAN results. Same held-out images and
answers as the unpaired benchmark."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from ganforge.data.digits_translation import DigitsTranslationDataModule, transform
from ganforge.data.translation import PairedDataModule


class DigitPairs:
    """Training pairs by the virtual indices of the loader's sampler (``v % n``): (a, T(a), label)."""

    def __init__(self, digits: DigitsTranslationDataModule) -> None:
        self.digits = digits

    def __len__(self) -> int:
        return self.digits.num_train_a()

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        a, labels = self.digits.train_a([int(v) % len(self) for v in indices])
        return a, transform(a), labels


class DigitsTranslationPairs(PairedDataModule):
    """Domain A's training digits paired with their T(a); held out: domain A's held-out images and T(a)."""

    def __init__(self, resolution: int = 16, val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.digits = DigitsTranslationDataModule(
            resolution=resolution, val_fraction=val_fraction, seed=self.seed
        )
        self.data_shape = self.source_shape = tuple(self.digits.data_shape)
        self.num_classes = self.digits.num_classes

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.digits.setup(stage)
            self.dataset = DigitPairs(self.digits)

    def num_items(self) -> int:
        return self.digits.num_train_a()

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        a, labels = self.digits.train_a(indices)
        return transform(a), labels

    def num_val_items(self) -> int:
        return self.digits.num_val_a()

    def val_items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        a, labels, truth = self.digits.val_a(indices)
        return a, truth, labels
