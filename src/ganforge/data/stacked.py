"""Stacked digits: ``k`` independently drawn images of a labelled grayscale dataset as the ``k``
channels of one image, so 10^k modes (k=3: 1,000; Stacked MNIST of Metz et al. 2017, VEEGAN, PacGAN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ganforge.data.base import GANDataModule
from ganforge.errors import ConfigError


class StackedDataset(Dataset):
    """Item ``i`` stacks the source items ``table[i]``; its label is their labels as base-C digits."""

    def __init__(self, source: GANDataModule, table: Tensor, base: int) -> None:
        self.source, self.table, self.base = source, table, base
        k = table.shape[1]
        self.weights = base ** torch.arange(k - 1, -1, -1)

    def __len__(self) -> int:
        return len(self.table)

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        rows = self.table[torch.as_tensor(indices, dtype=torch.long)]
        x, y = self.source.items(rows.flatten().tolist())
        n, k = rows.shape
        return x.reshape(n, k * x.shape[1], *x.shape[2:]), (y.reshape(n, k) * self.weights).sum(1)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.__getitems__([i])
        return x[0], y[0]


class StackedDataModule(GANDataModule):
    """``num_stacked`` digits of ``source`` per image, drawn by a fixed seeded table of ``num_items`` rows."""

    def __init__(self, source: GANDataModule, num_stacked: int = 3, num_items: int = 50000, **kwargs) -> None:
        super().__init__(**kwargs)
        channels, height, width = source.data_shape
        if channels != 1 or source.num_classes < 2:
            raise ConfigError("data=stacked needs a labelled grayscale source (digits, mnist, fashion_mnist)")
        self.source = source
        self.num_stacked = num_stacked
        self.num_items_ = num_items
        self.data_shape = (num_stacked, height, width)
        self.num_classes = source.num_classes**num_stacked

    def check(self) -> None:
        self.source.check()

    def labelled_source(self) -> GANDataModule:
        return self.source

    def train_labels(self) -> Tensor:
        """The stacked labels of the items (their source labels as base-C digits)."""
        if self.dataset is None:
            self.setup("fit")
        assert isinstance(self.dataset, StackedDataset)
        source_labels = self.source.train_labels()[self.dataset.table]
        return (source_labels * self.dataset.weights).sum(1)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        n = self.source.num_items()
        gen = torch.Generator().manual_seed(self.seed)
        table = torch.randint(n, (self.num_items_, self.num_stacked), generator=gen)
        self.dataset = StackedDataset(self.source, table, self.source.num_classes)
