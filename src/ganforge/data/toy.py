"""2D Gaussian mixtures of the mode-collapse literature (ring of 8, grid of 25): points drawn fresh every
step, or (``train_size``) a fixed training set drawn once and reshuffled every epoch, as PacGAN's code."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from ganforge.data.base import GANDataModule, InMemoryDataset
from ganforge.errors import ConfigError
from ganforge.seeding import mix_seed


def sample_mixture(centers: Tensor, std: float, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` points of an equal-weight isotropic mixture, and the index of the component of each."""
    modes = torch.randint(len(centers), (n,), generator=generator)
    points = centers[modes] + std * torch.randn(n, centers.shape[1], generator=generator)
    return points, modes


class _MixtureStream(IterableDataset):
    """The points of generator step ``k`` drawn from a generator seeded by ``(seed, rank, k)``, ``chunks``
    steps per yielded batch: endless, resumable at any step, the same data whatever the grouping."""

    def __init__(
        self, centers: Tensor, std: float, batch_size: int, seed: int, start: int, rank: int, chunks: int = 1
    ) -> None:
        super().__init__()
        self.centers, self.std, self.batch_size = centers, std, batch_size
        self.seed, self.start, self.rank, self.chunks = seed, start, rank, chunks

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        k = self.start
        gen = torch.Generator()
        while True:
            parts = []
            for step in range(k, k + self.chunks):
                gen.manual_seed(mix_seed(self.seed, self.rank, step))
                parts.append(sample_mixture(self.centers, self.std, self.batch_size, gen))
            points, modes = zip(*parts, strict=True)
            yield torch.cat(points), torch.cat(modes)
            k += self.chunks


class GaussianMixtureDataModule(GANDataModule):
    """Points of a 2D Gaussian mixture; labels are the component indices.

    ``train_size`` 0 (default): fresh points every step (an endless stream). ``train_size`` N: one set of
    N points drawn once from ``seed`` and cycled through in a fresh permutation per epoch, like the fixed
    100,000-point set of PacGAN's code (Lin et al. 2018; their packed slots each resample that set, here a
    packed batch takes consecutive positions of one permutation).
    """

    def __init__(self, centers: Tensor, std: float, train_size: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 0:
            raise ConfigError(
                f"data.train_size must be an integer >= 0 (0: fresh points each step), got {train_size!r}"
            )
        self.centers = torch.as_tensor(centers, dtype=torch.float32)
        self.std = float(std)
        self.train_size = train_size
        self.data_shape = (int(self.centers.shape[1]),)
        self.num_classes = 0

    def setup(self, stage: str | None = None) -> None:
        """The fixed training set when ``train_size`` is set (the same on every rank: it depends on the
        seed alone)."""
        if self.train_size and self.dataset is None:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.train_size))
            points, modes = sample_mixture(self.centers, self.std, self.train_size, gen)
            self.dataset = InMemoryDataset(points, modes)

    def train_dataloader(self) -> DataLoader:
        if self.train_size:
            return super().train_dataloader()
        start, rank, _ = self._position()
        stream = _MixtureStream(
            self.centers, self.std, self.step_batch_size, self.seed, start, rank, self.steps_per_batch
        )
        return DataLoader(stream, batch_size=None)

    def real_batch(self, n: int, seed: int = 0) -> Tensor:
        return sample_mixture(self.centers, self.std, n, torch.Generator().manual_seed(seed))[0]


class RingDataModule(GaussianMixtureDataModule):
    """``num_modes`` Gaussians evenly spaced on a circle (ring8: 8 modes, radius 1, std 0.01)."""

    def __init__(self, num_modes: int = 8, radius: float = 1.0, std: float = 0.01, **kwargs) -> None:
        angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
        centers = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
        super().__init__(centers.float(), std, **kwargs)


class GridDataModule(GaussianMixtureDataModule):
    """A ``grid_size``² grid of Gaussians centred on 0 (grid25: 5x5, spacing 2, std 0.05)."""

    def __init__(self, grid_size: int = 5, spacing: float = 2.0, std: float = 0.05, **kwargs) -> None:
        axis = (torch.arange(grid_size, dtype=torch.float32) - (grid_size - 1) / 2) * spacing
        centers = torch.cartesian_prod(axis, axis)
        super().__init__(centers, std, **kwargs)
