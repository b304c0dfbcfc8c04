"""What image-to-image translation data shares: the fixed held-out splits, the virtual-index sampler,
and the two contracts, paired (:class:`PairedDataModule`) and unpaired (:class:`UnpairedDataModule`).

As for every ganforge dataset, batch ``k`` of a training stream is a pure function of
``(seed, rank, world, k)``, random crops and flips included, so a resumed run sees exactly the data
of an uninterrupted one; the held-out split is the same for every run seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ganforge.data.base import GANDataModule, InfiniteBatchSampler, InMemoryDataset
from ganforge.errors import ConfigError, DataError
from ganforge.seeding import mix_seed

T = TypeVar("T")

HELD_OUT_SEED = 0  # the held-out split ignores the run seed: every run evaluates on the same items
DOMAINS = ("A", "B")


# --- held-out splits ------------------------------------------------------------------------------
def held_out_split(n: int, val_fraction: float) -> tuple[list[int], list[int]]:
    """(training, held-out) indices of ``n`` items: the held-out ones are the last ``val_fraction``
    of a permutation fixed by :data:`HELD_OUT_SEED`. The training list is sorted; the held-out list
    keeps the permutation's order, so any prefix of it (``metrics.num_samples``, the grids' examples)
    is a uniform sample, not the first classes of data stored class by class."""
    if n <= 1:
        return list(range(n)), []
    n_val = round(n * val_fraction)
    if val_fraction > 0:
        n_val = max(n_val, 1)
    n_val = min(n_val, n - 1)  # at least one training item
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(HELD_OUT_SEED))
    return sorted(perm[: n - n_val].tolist()), perm[n - n_val :].tolist()


def split_off(train: list[T], held: list[T] | None, val_fraction: float) -> tuple[list[T], list[T]]:
    """(training, held-out) items: ``held`` when the data has its own (a val/ or test/ folder), else
    the :func:`held_out_split` of ``train``."""
    if held is not None:
        return train, held
    keep, out = held_out_split(len(train), val_fraction)
    return [train[i] for i in keep], [train[i] for i in out]


def check_val_fraction(val_fraction: float) -> float:
    value = float(val_fraction)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"data.val_fraction must lie in [0, 1), got {val_fraction}.")
    return value


def check_indices(indices: Sequence[int], n: int, what: str) -> list[int]:
    """``indices`` as ints; an IndexError naming ``what`` (e.g. "the held-out split") when one is outside."""
    out = [int(i) for i in indices]
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise IndexError(f"index {bad[0]} out of range: {what} has {n} items")
    return out


class EpochIndexSampler(InfiniteBatchSampler):
    """:class:`InfiniteBatchSampler` yielding *virtual* indices ``epoch * num_items + i``.

    The dataset maps ``v % num_items`` to the item and seeds the item's randomness (crop, flip,
    noise, holes) with ``mix_seed(seed, v)``: pure functions of the stream position, so resuming at
    any batch is exact, and every epoch draws new augmentations.
    """

    virtual = True


# --- paired -----------------------------------------------------------------------------------------
class PairedDataModule(GANDataModule):
    """Base of paired data: ``(source, target, label)`` batches for image-to-image translation.

    ``data_shape`` is the target's (C, H, W), ``source_shape`` the source's (G's input). The base
    contract's samples (:meth:`items`, :meth:`real_batch`, :meth:`fingerprint`) are the training
    targets; :meth:`val_items` gives held-out pairs, deterministically (no augmentation).
    Subclasses build ``self.dataset`` in :meth:`setup`: a dataset whose ``__getitems__`` takes the
    virtual indices of :class:`EpochIndexSampler` and returns a ``(source, target, label)`` batch.
    """

    paired = True
    source_shape: tuple[int, int, int]

    def num_items(self) -> int:
        """Size of the training split."""
        raise NotImplementedError

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training targets (in [-1, 1], not augmented) and labels at ``indices`` of the training split."""
        raise NotImplementedError

    def num_val_items(self) -> int:
        """Size of the held-out split."""
        raise NotImplementedError

    def val_items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Held-out ``(source, target, label)`` at ``indices`` of the held-out split, deterministic."""
        raise NotImplementedError

    def _check_val_indices(self, indices: Sequence[int]) -> list[int]:
        return check_indices(indices, self.num_val_items(), "the held-out split")

    def batch_sampler(self, start: int, rank: int, world: int) -> EpochIndexSampler:
        """Virtual indices: each item's crop, flip, noise or holes follow its position in the stream."""
        return EpochIndexSampler(
            self.num_items(), self.step_batch_size, self.seed, start, rank, world, self.steps_per_batch
        )


# --- unpaired: two domains --------------------------------------------------------------------------
class Domain:
    """The images of one domain and split. ``items`` is deterministic (evaluation); ``stream`` takes
    the virtual indices of :class:`EpochIndexSampler` (training: the default is the item ``v % len``
    unchanged; augmenting domains draw crops/flips from ``v``)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Images in [-1, 1] and long labels at ``indices``."""
        raise NotImplementedError

    def stream(self, vs: Sequence[int]) -> tuple[Tensor, Tensor]:
        n = len(self)
        return self.items([int(v) % n for v in vs])


class TensorDomain(Domain):
    """Images held in memory (float in [-1, 1], or uint8 scaled on the fly) with their labels."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.data = InMemoryDataset(images, labels)

    def __len__(self) -> int:
        return len(self.data)

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        x, y = self.data.__getitems__([int(i) for i in indices])
        return x.float(), y


class SourceDomain(Domain):
    """Items ``indices`` of another data module, all labelled ``label``."""

    def __init__(self, source: GANDataModule, indices: Sequence[int], label: int) -> None:
        self.source = source
        self.indices = [int(i) for i in indices]
        self.label = int(label)

    def __len__(self) -> int:
        return len(self.indices)

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        x, _ = self.source.items([self.indices[int(i)] for i in indices])
        return x.float(), torch.full((len(x),), self.label, dtype=torch.long)


class UnpairedDataset(Dataset):
    """``(a, b, label_a, label_b)`` batches from two domains; ``__getitems__`` takes ``(va, vb)``
    pairs of virtual indices (one per domain stream, see :class:`UnpairedBatchSampler`)."""

    def __init__(self, a: Domain, b: Domain) -> None:
        self.a, self.b = a, b

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitems__(self, pairs: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        xa, ya = self.a.stream([int(va) for va, _ in pairs])
        xb, yb = self.b.stream([int(vb) for _, vb in pairs])
        return xa, xb, ya, yb

    def __getitem__(self, pair: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        xa, xb, ya, yb = self.__getitems__([pair])
        return xa[0], xb[0], ya[0], yb[0]


class UnpairedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Two independent :class:`EpochIndexSampler` streams zipped, one per domain, seeded
    ``mix_seed(seed, 0)`` (A) and ``mix_seed(seed, 1)`` (B) and split across ranks alike: lists of
    ``(va, vb)``, ``chunks`` batches of ``batch_size`` from generator step ``start`` on."""

    def __init__(
        self,
        num_a: int,
        num_b: int,
        batch_size: int,
        seed: int = 0,
        start: int = 0,
        rank: int = 0,
        world_size: int = 1,
        chunks: int = 1,
    ) -> None:
        self.a = EpochIndexSampler(num_a, batch_size, mix_seed(seed, 0), start, rank, world_size, chunks)
        self.b = EpochIndexSampler(num_b, batch_size, mix_seed(seed, 1), start, rank, world_size, chunks)

    def batch(self, k: int) -> list[tuple[int, int]]:
        """This rank's ``(va, vb)`` of global batch ``k``."""
        return list(zip(self.a.batch(k), self.b.batch(k), strict=True))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for va, vb in zip(self.a, self.b, strict=True):  # both endless
            yield list(zip(va, vb, strict=True))


class UnpairedDataModule(GANDataModule):
    """Base of unpaired data: ``(a, b, label_a, label_b)`` batches of two domains, drawn by two
    independent seeded streams (the domains need not have the same size; sample ``n`` of a batch
    pairs nothing). Each domain has a fixed held-out split for evaluation.

    ``data_shape`` (C, H, W) is that of both domains. ``num_classes``: the classes of the labels
    (0 when unlabelled, labels -1). ``has_ground_truth``: the held-out A images come with their known
    B counterpart. The base contract's samples (:meth:`items`, :meth:`real_batch`,
    :meth:`fingerprint`) are the training images of A, then those of B, not augmented.
    Subclasses implement :meth:`_build`, returning the training and held-out domains.
    """

    unpaired = True
    has_ground_truth: bool = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._train: tuple[Domain, Domain] | None = None
        self._held: tuple[Domain, Domain] | None = None

    def _build(self) -> tuple[Domain, Domain, Domain, Domain]:
        """(training A, training B, held-out A, held-out B), the training ones streamed by the loader."""
        raise NotImplementedError

    def ground_truth(self, a: Tensor) -> Tensor | None:
        """The B image each held-out A image should translate to (None: unknown)."""
        return None

    @property
    def domain_names(self) -> tuple[str, str]:
        """Names of the two domains, for plots and logs."""
        return DOMAINS

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        train_a, train_b, held_a, held_b = self._build()
        for name, domain in zip(DOMAINS, (train_a, train_b), strict=True):
            if len(domain) == 0:
                raise DataError(f"{type(self).__name__}: domain {name} has no training images.")
        self._train, self._held = (train_a, train_b), (held_a, held_b)
        self.dataset = UnpairedDataset(train_a, train_b)

    def _domains(self, held_out: bool) -> tuple[Domain, Domain]:
        if self._train is None:
            self.setup("fit")
        assert self._train is not None and self._held is not None
        return self._held if held_out else self._train

    def _domain_items(self, held_out: bool, side: int, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        domain = self._domains(held_out)[side]
        split = "held-out" if held_out else "training"
        return domain.items(check_indices(indices, len(domain), f"the {split} split of {DOMAINS[side]}"))

    def batch_sampler(self, start: int, rank: int, world: int) -> UnpairedBatchSampler:
        """Two independent streams, one per domain."""
        a, b = self._domains(held_out=False)
        return UnpairedBatchSampler(
            len(a), len(b), self.step_batch_size, self.seed, start, rank, world, self.steps_per_batch
        )

    def num_train_a(self) -> int:
        return len(self._domains(False)[0])

    def num_train_b(self) -> int:
        return len(self._domains(False)[1])

    def train_a(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training images of A (not augmented) and their labels."""
        return self._domain_items(False, 0, indices)

    def train_b(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training images of B (not augmented) and their labels."""
        return self._domain_items(False, 1, indices)

    def num_items(self) -> int:
        """Training images of both domains."""
        return self.num_train_a() + self.num_train_b()

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training images (in [-1, 1], not augmented) and labels: A's are ``0 .. num_train_a - 1``,
        B's follow."""
        n_a = self.num_train_a()
        idx = check_indices(indices, self.num_items(), "the training images of both domains")
        a_at = [k for k, i in enumerate(idx) if i < n_a]
        b_at = [k for k, i in enumerate(idx) if i >= n_a]
        parts = []
        if a_at:
            parts.append((a_at, self.train_a([idx[k] for k in a_at])))
        if b_at:
            parts.append((b_at, self.train_b([idx[k] - n_a for k in b_at])))
        if not parts:
            x = torch.empty((0, *self.data_shape))
            return x, torch.empty((0,), dtype=torch.long)
        if len(parts) == 1:
            return parts[0][1]
        x = torch.empty((len(idx), *self.data_shape), dtype=parts[0][1][0].dtype)
        y = torch.empty((len(idx),), dtype=torch.long)
        for at, (xs, ys) in parts:
            x[at], y[at] = xs, ys
        return x, y

    def num_val_a(self) -> int:
        return len(self._domains(True)[0])

    def num_val_b(self) -> int:
        return len(self._domains(True)[1])

    def val_a(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor | None]:
        """Held-out ``(a, label_a, truth)``; ``truth`` = the B image ``a`` should translate to when
        :attr:`has_ground_truth`, else None. Deterministic, the same for every run seed."""
        a, label = self._domain_items(True, 0, indices)
        return a, label, self.ground_truth(a)

    def val_b(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Held-out ``(b, label_b)``, deterministic, the same for every run seed."""
        return self._domain_items(True, 1, indices)
