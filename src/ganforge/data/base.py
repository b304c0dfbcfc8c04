"""The contract every dataset follows: an endless, seeded, resumable stream of real batches.

One loader batch feeds one training step. It holds ``draws_per_step`` (= ``train.n_critic``)
batches of ``batch_size`` samples stacked along dim 0, so the module can give every
discriminator update a fresh real batch. Batch ``k`` of the stream is a pure function of
``(seed, rank, world_size, k)``: a run resumed at generator step ``k`` sees exactly the data
the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ganforge.errors import ConfigError
from ganforge.seeding import mix_seed


class InfiniteBatchSampler(Sampler[list[int]]):
    """Yields index batches forever: a fresh seeded permutation per epoch, split across ranks.

    The stream is the concatenation of the epoch permutations; global batch ``k`` takes the
    next ``batch_size * world_size`` positions and rank ``r`` takes its slice of them. Each
    yielded list joins ``chunks`` consecutive batches (one per generator step of a Lightning
    batch), so the data of step ``k`` is batch ``k`` whatever the grouping, and ``start`` is a step.
    """

    virtual = False  # True: yield epoch * num_items + i (see ganforge.data.translation.EpochIndexSampler)

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        chunks: int = 1,
    ) -> None:
        if num_items <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self.chunks = chunks
        self._epoch = -1
        self._perm: Tensor | None = None

    def _permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            self._perm = torch.randperm(self.num_items, generator=gen)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm

    def batch(self, k: int) -> list[int]:
        """Indices of this rank's part of global batch ``k``."""
        first = (k * self.world_size + self.rank) * self.batch_size
        out: list[int] = []
        pos = first
        while len(out) < self.batch_size:
            epoch, offset = divmod(pos, self.num_items)
            take = min(self.batch_size - len(out), self.num_items - offset)
            part = self._permutation(epoch)[offset : offset + take]
            out.extend((part + epoch * self.num_items if self.virtual else part).tolist())
            pos += take
        return out

    def __iter__(self) -> Iterator[list[int]]:
        k = self.start
        while True:
            yield [i for j in range(k, k + self.chunks) for i in self.batch(j)]
            k += self.chunks


class InMemoryDataset(Dataset):
    """Images (float in [-1, 1], or uint8 scaled on the fly) and labels held as tensors.

    ``__getitems__`` returns a whole batch at once (no per-item collation); use it with
    :func:`identity_collate`.
    """

    def __init__(self, images: Tensor, labels: Tensor | None = None) -> None:
        self.images = images
        self.labels = labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def _scale(self, x: Tensor) -> Tensor:
        if x.dtype == torch.uint8:
            return x.float().div_(127.5).sub_(1.0)
        return x

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self._scale(self.images[i]), self.labels[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self._scale(self.images[idx]), self.labels[idx]


def fetch(dataset: Dataset, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Samples and labels of ``dataset`` at ``indices``: one batch read where it can (``__getitems__``)."""
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(list(indices))
    xs, ys = zip(*(dataset[i] for i in indices), strict=True)
    return torch.stack(xs), torch.as_tensor(ys)


def identity_collate(batch: Any) -> Any:
    """Collate for datasets whose ``__getitems__`` already returns a batch."""
    return batch


class GANDataModule(pl.LightningDataModule):
    """Base for every dataset of ganforge.

    Subclasses set ``data_shape`` and ``num_classes`` in ``__init__`` and build
    ``self.dataset`` (a map-style dataset of ``(x, y)`` with x in [-1, 1]) in :meth:`setup`,
    or override :meth:`train_dataloader` for data generated on the fly.
    """

    data_shape: tuple[int, ...]
    num_classes: int = 0

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        draws_per_step: int = 1,
        steps_per_batch: int = 1,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 0:
            raise ConfigError(
                f"data.num_workers must be a non-negative integer (0: load in this process), "
                f"got {num_workers!r}"
            )
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.draws_per_step = draws_per_step
        self.steps_per_batch = steps_per_batch
        self.pin_memory = pin_memory
        self.dataset: Dataset | None = None
        self.held_out: Dataset | None = None  # real items training never shows (see held_out_items)
        self.population: Dataset | None = None  # all items the training set was drawn from (None: itself)

    def check(self) -> None:
        """Fail fast with a :class:`~ganforge.errors.DataError` when the data is unusable (default: no-op)."""

    @property
    def is_image(self) -> bool:
        return len(self.data_shape) == 3

    @property
    def step_batch_size(self) -> int:
        """Samples per generator step on one rank: one real batch per discriminator update."""
        return self.batch_size * self.draws_per_step

    def _position(self) -> tuple[int, int, int]:
        """(first generator step, rank, world size): resume at the module's generator step."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        module = trainer.lightning_module
        start = int(getattr(module, "g_step", 0)) if module is not None else 0
        return start, trainer.global_rank, trainer.world_size

    def collate_fn(self) -> Any:
        return identity_collate if hasattr(self.dataset, "__getitems__") else None

    def batch_sampler(self, start: int, rank: int, world: int) -> Sampler:
        """The index batches of the training stream from generator step ``start`` on this rank (paired
        and two-domain data draw theirs otherwise)."""
        assert self.dataset is not None
        return InfiniteBatchSampler(
            len(self.dataset), self.step_batch_size, self.seed, start, rank, world, self.steps_per_batch
        )

    def train_dataloader(self) -> DataLoader:
        if self.dataset is None:
            self.setup("fit")
        assert self.dataset is not None
        return DataLoader(
            self.dataset,
            batch_sampler=self.batch_sampler(*self._position()),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn(),
        )

    def labelled_source(self) -> GANDataModule:
        """The data whose labels train the metrics classifier (itself; stacked data: its source)."""
        return self

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Samples (in [-1, 1]) and labels at ``indices`` of the dataset."""
        if self.dataset is None:
            self.setup("fit")
        assert self.dataset is not None
        return fetch(self.dataset, indices)

    def held_out_items(self, n: int) -> tuple[Tensor, Tensor] | None:
        """The first ``n`` real items that training never shows (all when fewer), or None when the data
        keeps none back: what D's outputs on its training reals are compared with (overfitting)."""
        if self.dataset is None:
            self.setup("fit")
        if self.held_out is None or not len(self.held_out):  # type: ignore[arg-type]
            return None
        return fetch(self.held_out, range(min(n, len(self.held_out))))  # type: ignore[arg-type]

    def train_labels(self) -> Tensor:
        """The class label of every training item (datasets keep them as a ``labels`` tensor)."""
        if self.dataset is None:
            self.setup("fit")
        labels = getattr(self.dataset, "labels", None)
        if labels is None:
            raise NotImplementedError(f"{type(self).__name__} does not list the labels of its items")
        return torch.as_tensor(labels, dtype=torch.long)

    def label_counts(self) -> Tensor:
        """Training items per class, shape (num_classes,): the label distribution a conditional G draws
        its labels from (uniform labels on imbalanced data give a conditional D the label prior as a cue)."""
        labels = self.train_labels()
        return torch.bincount(labels[labels >= 0], minlength=self.num_classes)[: self.num_classes]

    def num_items(self) -> int:
        if self.dataset is None:
            self.setup("fit")
        return len(self.dataset)  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        """A short hash of the data: its class, shape, size and the bytes of 256 evenly spaced samples.

        Caches of things derived from the data (classifier, reference statistics) are keyed by it.
        """
        n = self.num_items()
        digest = hashlib.sha256(f"{type(self).__name__}|{self.data_shape}|{n}|{self.num_classes}".encode())
        x, y = self.items(np.linspace(0, n - 1, min(n, 256)).astype(int).tolist())
        digest.update(x.float().mul(127.5).round().to(torch.int16).numpy().tobytes())
        digest.update(y.numpy().tobytes())
        return digest.hexdigest()[:16]

    def real_batch(self, n: int, seed: int = 0) -> Tensor:
        """``n`` real samples (x only) of :meth:`items`, drawn reproducibly: for plots and metrics."""
        gen = torch.Generator().manual_seed(seed)
        return self.items(torch.randint(self.num_items(), (n,), generator=gen).tolist())[0]


class Population(GANDataModule):
    """All the items a datamodule's training set was drawn from, in their own order (read-only, for
    metrics: ``metrics.reference=all``): the same reference set, and features, whatever ``data.limit``."""

    def __init__(self, datamodule: GANDataModule) -> None:
        super().__init__(batch_size=datamodule.batch_size, seed=datamodule.seed)
        datamodule.num_items()  # set up
        self.data_shape = datamodule.data_shape
        self.num_classes = datamodule.num_classes
        self.dataset = datamodule.population if datamodule.population is not None else datamodule.dataset
