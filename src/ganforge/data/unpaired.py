"""Unpaired images of two domains for unpaired image-to-image translation (CycleGAN, Zhu et al. 2017).

An :class:`UnpairedDataModule` streams ``(a, b, label_a, label_b)`` batches: an image of domain A
and one of domain B per sample, drawn by two independent seeded streams (the domains need not have
the same size, and sample ``n`` of a batch pairs nothing). As for every ganforge dataset, batch ``k``
is a pure function of ``(seed, rank, world, k)``, random crops and flips included, so a resumed run
sees exactly the data of an uninterrupted one. Each domain also has a fixed held-out split (the same
for every run seed) for evaluation.

- :class:`UnpairedFolderDataModule` (``data=unpaired_folder``): CycleGAN's ``trainA/``, ``trainB/``,
  ``testA/``, ``testB/`` folders, in a folder or a .zip.
- :class:`DigitsTranslationDataModule` (``data=digits_translation``): a benchmark with a known
  answer, no download: scikit-learn's digits (A) and digits under a fixed :func:`transform` (B),
  from disjoint halves of the data, with the ground truth ``transform(a)`` of every held-out ``a``.
- :class:`ClassPairDataModule` (``data=class_pair``): two classes of any labelled image data
  (e.g. CIFAR-10's horses and deer) as the two domains.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ganforge.data.base import GANDataModule, InMemoryDataset, mix_seed
from ganforge.data.folder import FileSource, existing_source, list_images
from ganforge.data.paired import (
    HELD_OUT_SEED,
    EpochIndexSampler,
    check_val_fraction,
    file_options,
    fit_square,
    held_out_split,
    wrapper_prefix,
)
from ganforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DOMAINS = ("A", "B")
CYCLEGAN_FOLDERS = ("trainA", "trainB", "testA", "testB")
CYCLEGAN_LAYOUT = "expected the CycleGAN layout: trainA/, trainB/ (and testA/, testB/) folders of images"


# --- the streams ------------------------------------------------------------------------------------
class Domain:
    """The images of one domain and split. ``items`` is deterministic (evaluation); ``stream`` takes
    the virtual indices of :class:`~ganforge.data.paired.EpochIndexSampler` (training: the default
    is the item ``v % len`` unchanged; augmenting domains draw crops/flips from ``v``)."""

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
    """Two independent :class:`~ganforge.data.paired.EpochIndexSampler` streams, one per domain,
    seeded ``mix_seed(seed, 0)`` (A) and ``mix_seed(seed, 1)`` (B) and split across ranks alike.

    Yields lists of ``(va, vb)`` virtual indices: ``chunks`` consecutive batches of ``batch_size``
    (one per generator step of a Lightning batch), starting at generator step ``start``.
    """

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
        self.start = start
        self.chunks = chunks

    def batch(self, k: int) -> list[tuple[int, int]]:
        """This rank's ``(va, vb)`` of global batch ``k``."""
        return list(zip(self.a.batch(k), self.b.batch(k), strict=True))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.start
        while True:
            yield [pair for j in range(k, k + self.chunks) for pair in self.batch(j)]
            k += self.chunks


class UnpairedDataModule(GANDataModule):
    """Base of unpaired data: ``(a, b, label_a, label_b)`` batches of two domains.

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

    # --- what subclasses implement --------------------------------------------------------------
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

    # --- shared ---------------------------------------------------------------------------------
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

    def labelled_source(self) -> GANDataModule:
        return self

    def batch_sampler(self, start: int, rank: int, world: int) -> UnpairedBatchSampler:
        """Two independent streams, one per domain."""
        a, b = self._domains(held_out=False)
        return UnpairedBatchSampler(
            len(a), len(b), self.step_batch_size, self.seed, start, rank, world, self.steps_per_batch
        )

    @staticmethod
    def _checked(indices: Sequence[int], n: int, what: str) -> list[int]:
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < n]
        if bad:
            raise IndexError(f"index {bad[0]} out of range: {what} has {n} items")
        return out

    def num_train_a(self) -> int:
        return len(self._domains(False)[0])

    def num_train_b(self) -> int:
        return len(self._domains(False)[1])

    def train_a(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training images of A (not augmented) and their labels."""
        domain = self._domains(False)[0]
        return domain.items(self._checked(indices, len(domain), "the training split of A"))

    def train_b(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training images of B (not augmented) and their labels."""
        domain = self._domains(False)[1]
        return domain.items(self._checked(indices, len(domain), "the training split of B"))

    def num_items(self) -> int:
        """Training images of both domains."""
        return self.num_train_a() + self.num_train_b()

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Training images (in [-1, 1], not augmented) and labels: A's are ``0 .. num_train_a - 1``,
        B's follow."""
        n_a = self.num_train_a()
        idx = self._checked(indices, self.num_items(), "the training images of both domains")
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

    def real_batch(self, n: int, seed: int = 0) -> Tensor:
        """``n`` training images of either domain, drawn reproducibly: for plots and metrics."""
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(self.num_items(), (n,), generator=gen).tolist()
        return self.items(idx)[0]

    def num_val_a(self) -> int:
        return len(self._domains(True)[0])

    def num_val_b(self) -> int:
        return len(self._domains(True)[1])

    def val_a(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor | None]:
        """Held-out ``(a, label_a, truth)``; ``truth`` = the B image ``a`` should translate to when
        :attr:`has_ground_truth`, else None. Deterministic, the same for every run seed."""
        domain = self._domains(True)[0]
        a, label = domain.items(self._checked(indices, len(domain), "the held-out split of A"))
        return a, label, self.ground_truth(a)

    def val_b(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Held-out ``(b, label_b)``, deterministic, the same for every run seed."""
        domain = self._domains(True)[1]
        return domain.items(self._checked(indices, len(domain), "the held-out split of B"))


# --- CycleGAN's folders -----------------------------------------------------------------------------
@dataclass
class CycleGANIndex:
    """The images of a CycleGAN-layout source per domain, split into training and held-out."""

    train: tuple[list[str], list[str]]
    held_out: tuple[list[str], list[str]]
    held_out_from: tuple[str, str]  # "testA"/"testB", or "val_fraction"


def _folders(path: Path) -> set[str]:
    """POSIX paths of every folder inside ``path`` (a folder or a zip), images or not."""
    if path.is_dir():
        return {f.relative_to(path).as_posix() for f in path.rglob("*") if f.is_dir()}
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    out: set[str] = set()
    for name in names:
        parts = PurePosixPath(name).parts
        depth = len(parts) if name.endswith("/") else len(parts) - 1
        out.update("/".join(parts[: k + 1]) for k in range(depth))
    return out


def index_cyclegan(path: str | os.PathLike, val_fraction: float = 0.1) -> CycleGANIndex:
    """Find the images of ``path`` (a folder or .zip in CycleGAN's layout); one-line :class:`DataError` s."""
    p = existing_source(path, "unpaired image", "with trainA/ and trainB/")
    shown = p.resolve()
    names = list_images(p)
    if not names:
        raise DataError(f"{shown} holds no images; {CYCLEGAN_LAYOUT}.")
    prefix = wrapper_prefix(names, set(CYCLEGAN_FOLDERS))
    groups: dict[str, list[str]] = {}
    others: set[str] = set()
    for name in names:
        parts = PurePosixPath(name[len(prefix) :]).parts
        if len(parts) > 1 and parts[0] in CYCLEGAN_FOLDERS:
            groups.setdefault(parts[0], []).append(name)
        else:
            others.add(parts[0] if len(parts) > 1 else ".")
    for side in ("trainA", "trainB"):
        if side in groups:
            continue
        if prefix + side in _folders(p):
            raise DataError(
                f"{shown}: {prefix}{side}/ holds no images; domain {side[-1]} needs training images."
            )
        found = ", ".join(sorted(f + "/" if f != "." else "(top level)" for f in set(groups) | others))
        raise DataError(f"{shown} has no {prefix}{side}/ folder; {CYCLEGAN_LAYOUT}. Found images in {found}.")
    if others:
        log.warning(
            "%s: ignoring images outside %s (in %s)",
            shown,
            ", ".join(f + "/" for f in CYCLEGAN_FOLDERS),
            ", ".join(sorted(others)),
        )
    train: list[list[str]] = []
    held: list[list[str]] = []
    sources: list[str] = []
    for side in DOMAINS:
        members = sorted(groups[f"train{side}"])
        if f"test{side}" in groups:
            train.append(members)
            held.append(sorted(groups[f"test{side}"]))
            sources.append(f"test{side}")
        else:
            keep, out = held_out_split(len(members), val_fraction)
            train.append([members[i] for i in keep])
            held.append([members[i] for i in out])
            sources.append("val_fraction")
    return CycleGANIndex((train[0], train[1]), (held[0], held[1]), (sources[0], sources[1]))


class ImageFileDomain(FileSource, Domain):
    """Images of one domain decoded on demand from a folder or zip, unlabelled.

    ``items``: resized to ``resolution`` (shorter side, then a center square), nothing random.
    ``stream`` (training): resized to ``load_size``, randomly cropped to ``resolution`` and maybe
    flipped, with a generator seeded by ``mix_seed(seed, domain, v)``. An unreadable image is
    replaced by the next readable one (up to ``max_bad_fraction``). Picklable for DataLoader
    workers: the zip handle is opened lazily per process.
    """

    def __init__(
        self,
        source: str,
        members: list[str],
        resolution: int,
        load_size: int,
        channels: int = 3,
        flip: bool = True,
        seed: int = 0,
        domain: int = 0,
        max_bad_fraction: float = 0.01,
    ) -> None:
        FileSource.__init__(self, source, max_bad_fraction)
        self.members = list(members)
        self.resolution = resolution
        self.load_size = load_size
        self.mode = "L" if channels == 1 else "RGB"
        self.flip = flip
        self.seed = seed
        self.domain = domain
        self.where = f" of domain {DOMAINS[domain]}"

    def __len__(self) -> int:
        return len(self.members)

    def item_name(self, i: int) -> str:
        return self.members[i]

    def _decode(self, i: int, size: int) -> Tensor:
        """Image ``i`` as uint8 (C, size, size)."""
        with Image.open(self.member_file(self.members[i])) as img:
            img.draft(self.mode, (size, size))  # JPEG only: decode at a reduced scale, still >= size
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            img = fit_square(img.convert(self.mode), size)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)

    def _readable(self, i: int, size: int) -> Tensor:
        return self.first_readable(i, lambda j: self._decode(j, size))[1]

    @staticmethod
    def _scale(xs: list[Tensor]) -> Tensor:
        return torch.stack(xs).float().div_(127.5).sub_(1.0)

    def _unlabelled(self, n: int) -> Tensor:
        return torch.full((n,), -1, dtype=torch.long)

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        xs = [self._readable(int(i), self.resolution) for i in indices]
        if not xs:
            return torch.empty(
                (0, 1 if self.mode == "L" else 3, self.resolution, self.resolution)
            ), self._unlabelled(0)
        return self._scale(xs), self._unlabelled(len(xs))

    def augmented(self, v: int) -> Tensor:
        """The training crop of virtual index ``v`` (uint8): a pure function of (seed, domain, v)."""
        x = self._readable(v % len(self), self.load_size)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.domain, v))
        room = self.load_size - self.resolution
        top, left = (int(t) for t in torch.randint(room + 1, (2,), generator=gen))
        flip = bool(torch.rand((), generator=gen) < 0.5) and self.flip
        r = self.resolution
        x = x[:, top : top + r, left : left + r]
        return x.flip(-1) if flip else x

    def stream(self, vs: Sequence[int]) -> tuple[Tensor, Tensor]:
        return self._scale([self.augmented(int(v)) for v in vs]), self._unlabelled(len(vs))


class UnpairedFolderDataModule(UnpairedDataModule):
    """Unpaired images from a folder or .zip in CycleGAN's layout (e.g. ``horse2zebra.zip``).

    ``trainA/`` and ``trainB/`` hold the training images of the two domains (searched recursively),
    ``testA/`` and ``testB/`` the held-out ones; a single folder wrapping everything
    (``horse2zebra/``) is looked through. A domain without its test folder holds out the last
    ``val_fraction`` of a permutation of its training images fixed by seed 0. Both domains are
    converted to ``channels`` and ``resolution``. Training images are resized to ``load_size``
    (None: ``round(resolution * 286 / 256)``, CycleGAN's resize-then-random-crop), randomly cropped
    to ``resolution`` and flipped (``flip``), each domain by its own draws; held-out images are
    resized to ``resolution``. Unlabelled: labels are -1, ``num_classes`` 0, no ground truth.
    """

    def __init__(
        self,
        path: str,
        resolution: int = 256,
        load_size: int | None = None,
        flip: bool = True,
        val_fraction: float = 0.1,
        channels: int = 3,
        max_bad_fraction: float = 0.01,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        resolution, load = file_options(resolution, load_size, channels, max_bad_fraction)
        self.path = str(path)
        self.resolution = resolution
        self.load_size = load
        self.flip = bool(flip)
        self.val_fraction = check_val_fraction(val_fraction)
        self.channels = int(channels)
        self.max_bad_fraction = float(max_bad_fraction)
        self.data_shape = (self.channels, resolution, resolution)
        self.num_classes = 0
        self._index: CycleGANIndex | None = None

    def _get_index(self) -> CycleGANIndex:
        if self._index is None:
            self._index = index_cyclegan(self.path, self.val_fraction)
        return self._index

    @property
    def held_out_from(self) -> tuple[str, str]:
        """Where each domain's held-out images come from: "testA"/"testB", or "val_fraction"."""
        return self._get_index().held_out_from

    def check(self) -> None:
        """Index the images: one-line :class:`DataError` s for a missing path, layout or domain."""
        self._get_index()

    def _domain(self, members: list[str], domain: int) -> ImageFileDomain:
        return ImageFileDomain(
            os.path.abspath(self.path),
            members,
            self.resolution,
            self.load_size,
            self.channels,
            self.flip,
            self.seed,
            domain,
            self.max_bad_fraction,
        )

    def _build(self) -> tuple[Domain, Domain, Domain, Domain]:
        index = self._get_index()
        (train_a, train_b), (held_a, held_b) = index.train, index.held_out
        return (
            self._domain(train_a, 0),
            self._domain(train_b, 1),
            self._domain(held_a, 0),
            self._domain(held_b, 1),
        )

    @property
    def num_bad(self) -> int:
        """Unreadable training images met so far by the loader in this process."""
        if self._train is None:
            return 0
        return sum(len(d.bad_indices) for d in self._train if isinstance(d, ImageFileDomain))


# --- digits translation: a benchmark with a known answer --------------------------------------------
INK = (1.0, 0.55, 0.1)  # RGB in [0, 1] of domain B's strokes: an orange ink
PAPER = (0.05, 0.05, 0.2)  # RGB in [0, 1] of domain B's background: a dark blue paper (its blue channel
# is brighter than the ink's: there the digit is inverted)


def stroke_kernel(size: int) -> int:
    """Side of :func:`transform`'s dilation for ``size`` px images: 3 up to 31 px, 5 at 32, 9 at 64
    (about the same thickening relative to the digit at every resolution)."""
    return 2 * max(1, size // 16) + 1


def transform(x: Tensor) -> Tensor:
    """Domain B of ``data=digits_translation``: the fixed map T from a digit image to its B version.

    ``x``: (N, C, H, W) or (C, H, W) in [-1, 1], light strokes on a dark background (domain A: a
    grayscale digit, any number of channels). T:

    1. stroke intensity ``s = (mean over channels of x + 1) / 2``, in [0, 1];
    2. thicker strokes: ``s' = max_pool2d(s, k, stride=1, padding=k // 2)``, a k x k morphological
       dilation, ``k =`` :func:`stroke_kernel` ``(W)`` (3 at 16 px);
    3. ink on paper: ``paper * (1 - s') + ink * s'`` per RGB channel, ``ink`` = :data:`INK`,
       ``paper`` = :data:`PAPER`, then mapped to [-1, 1].

    Returns 3 channels. No translation of ``x`` matches ``T(x)``: the colours change (in the blue
    channel the strokes are darker than the paper: the digit is inverted there), and the dilation
    adds stroke pixels (more ink than any shift of the digit has).

    Dark paper, not light: with light paper (the digit inverted in every channel) CycleGAN found a
    permutation of the digit classes instead (G_AB turned 5s into 1s and 0s into 5s, cycle-consistent,
    class accuracy 0.07 after 2,000 steps); with dark paper it keeps the digit (0.9+ after 750 steps).
    """
    single = x.ndim == 3
    batch = x.unsqueeze(0) if single else x
    if batch.ndim != 4:
        raise ValueError(f"transform takes (N, C, H, W) or (C, H, W) images, got shape {tuple(x.shape)}")
    s = batch.float().mean(1, keepdim=True).add(1.0).div(2.0).clamp(0.0, 1.0)
    k = stroke_kernel(int(batch.shape[-1]))
    s = F.max_pool2d(s, k, stride=1, padding=k // 2)
    ink = torch.tensor(INK, dtype=s.dtype, device=s.device).view(1, 3, 1, 1)
    paper = torch.tensor(PAPER, dtype=s.dtype, device=s.device).view(1, 3, 1, 1)
    out = (paper * (1.0 - s) + ink * s).mul(2.0).sub(1.0)
    return out[0] if single else out


def load_digit_images(resolution: int) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 digits as (N, 1, R, R) floats in [-1, 1] (bilinear upsampling, as
    ``data=digits``), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if resolution != 8:
        images = F.interpolate(images, size=resolution, mode="bilinear", align_corners=False)
    return images.clamp(0, 1).mul(2).sub(1).contiguous(), torch.as_tensor(digits.target, dtype=torch.long)


class DigitsTranslationDataModule(UnpairedDataModule):
    """Digits (A) to ink-on-paper digits with thicker strokes (B = :func:`transform` of a digit).

    scikit-learn's bundled 1,797 8x8 digits, upsampled to ``resolution``, as 3-channel images (the
    gray repeated) so both domains share a shape. A seed-0 permutation splits the digits into two
    disjoint halves: A's images come from the first (899), B's from the second (898, T applied), so no
    pair ``(a, T(a))`` is ever seen in training. Each half holds out the last ``val_fraction`` of a
    seed-0 permutation of it (0.1: 90 + 90 held out, 809 + 808 training images). Held-out A images come
    with their ground truth ``T(a)``. Labels: the digits (``num_classes`` 10), in both domains.
    Built once in memory; no augmentation.
    """

    has_ground_truth = True

    def __init__(self, resolution: int = 16, val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(resolution, bool) or not float(resolution).is_integer() or int(resolution) < 8:
            raise ConfigError(f"data.resolution must be an integer >= 8 (e.g. 16 or 32), got {resolution}.")
        self.resolution = int(resolution)
        self.val_fraction = check_val_fraction(val_fraction)
        self.data_shape = (3, self.resolution, self.resolution)
        self.num_classes = 10
        self._source_indices: dict[str, list[int]] | None = None

    @property
    def domain_names(self) -> tuple[str, str]:
        return ("digits", "ink on paper")

    @staticmethod
    def split(n: int, val_fraction: float) -> dict[str, list[int]]:
        """Indices into the ``n`` digits of each part: ``train_a``, ``val_a``, ``train_b``, ``val_b``."""
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(HELD_OUT_SEED)).tolist()
        half = (n + 1) // 2
        out: dict[str, list[int]] = {}
        for side, part in (("a", perm[:half]), ("b", perm[half:])):
            keep, held = held_out_split(len(part), val_fraction)
            out[f"train_{side}"] = [part[i] for i in keep]
            out[f"val_{side}"] = [part[i] for i in held]
        return out

    def source_indices(self) -> dict[str, list[int]]:
        """Which of scikit-learn's digits (their order in ``load_digits()``) each part holds:
        ``train_a``, ``val_a``, ``train_b``, ``val_b``; A's and B's are disjoint."""
        if self._source_indices is None:
            self.setup("fit")
        assert self._source_indices is not None
        return {k: list(v) for k, v in self._source_indices.items()}

    def ground_truth(self, a: Tensor) -> Tensor:
        return transform(a)

    def _build(self) -> tuple[Domain, Domain, Domain, Domain]:
        images, labels = load_digit_images(self.resolution)
        self._source_indices = self.split(len(images), self.val_fraction)
        rgb = images.expand(-1, 3, -1, -1)

        def part(name: str) -> TensorDomain:
            idx = torch.as_tensor(self._source_indices[name], dtype=torch.long)  # type: ignore[index]
            x = rgb[idx]
            return TensorDomain((transform(x) if name.endswith("_b") else x).contiguous(), labels[idx])

        return part("train_a"), part("train_b"), part("val_a"), part("val_b")


# --- two classes of a labelled dataset --------------------------------------------------------------
FASHION_MNIST_CLASSES = (  # label order of torchvision's FashionMNIST
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def class_names(source: GANDataModule) -> list[str] | None:
    """The class names of ``source`` in label order, when known (None otherwise)."""
    from ganforge.data.digits import DigitsDataModule
    from ganforge.data.torchvision_data import (
        CIFAR10_CLASSES,
        CIFAR10DataModule,
        FashionMNISTDataModule,
        MNISTDataModule,
    )

    if isinstance(source, CIFAR10DataModule):
        return list(CIFAR10_CLASSES)
    if isinstance(source, FashionMNISTDataModule):
        return list(FASHION_MNIST_CLASSES)
    names = getattr(source, "classes", None)
    if names and not callable(names):
        return [str(c) for c in names]
    if isinstance(source, (MNISTDataModule, DigitsDataModule)):
        return [str(d) for d in range(10)]
    return None


def _source_name(source: GANDataModule) -> str:
    return type(source).__name__.removesuffix("DataModule")


def source_labels(source: GANDataModule, chunk: int = 4096) -> Tensor:
    """The labels of every item of ``source`` (read from its dataset when it holds them)."""
    source.setup("fit")
    labels = getattr(source.dataset, "labels", None)
    if isinstance(labels, Tensor) and len(labels) == source.num_items():
        return labels.long()
    n = source.num_items()
    return torch.cat(
        [
            torch.as_tensor(source.items(list(range(i, min(i + chunk, n))))[1]).long()
            for i in range(0, n, chunk)
        ]
        or [torch.empty((0,), dtype=torch.long)]
    )


class ClassPairDataModule(UnpairedDataModule):
    """Two classes of a labelled image dataset as the two domains (e.g. CIFAR-10's horses and deer).

    ``source``: a data module, or its config (built here, at ``resolution`` when that is set; its
    batch, worker and seed settings are unused: this module's own apply). ``class_a``, ``class_b``:
    class indices, or names for sources that know them (CIFAR-10: airplane, automobile, bird, cat,
    deer, dog, frog, horse, ship, truck; Fashion-MNIST: torchvision's names; image_folder: the
    subfolder names; digits, MNIST: "0" .. "9"). Domain A is the source's images of ``class_a``, B
    those of ``class_b``; each holds out the last ``val_fraction`` of a seed-0 permutation of its
    images. No augmentation. Labels: 0 for A's images, 1 for B's (``num_classes`` 2: the metrics
    classifier learns to tell the domains apart, so an FID on its features is a weak measure:
    prefer inception weights when available). No ground truth.
    """

    def __init__(
        self,
        source: GANDataModule | DictConfig | dict,
        class_a: int | str = 0,
        class_b: int | str = 1,
        resolution: int | None = None,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from ganforge.data.degrade import DegradedDataModule  # its source builder (nested data config)
        from ganforge.data.paired import PairedDataModule

        self.source = DegradedDataModule._build_source(source, resolution)
        shape = tuple(self.source.data_shape)
        if isinstance(self.source, PairedDataModule | UnpairedDataModule) or len(shape) != 3:
            gives = "pairs" if isinstance(self.source, PairedDataModule) else "two domains"
            gives = gives if len(shape) == 3 else f"samples of shape {shape}"
            name = _source_name(self.source)
            raise ConfigError(f"data=class_pair needs an image dataset as data.source; {name} gives {gives}.")
        for key, value in (("class_a", class_a), ("class_b", class_b)):
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ConfigError(f"data.{key} must be a class index or name, got {value!r}.")
        self.class_a, self.class_b = class_a, class_b
        self.val_fraction = check_val_fraction(val_fraction)
        self.data_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.resolution = int(shape[1])
        self.num_classes = 2
        self._classes: tuple[int, int] | None = None

    def prepare_data(self) -> None:
        self.source.prepare_data()

    def _resolve(self, key: str, value: int | str) -> int:
        """The label of ``value`` (an index or a name) in the source; one-line ConfigError otherwise."""
        name = _source_name(self.source)
        count = int(self.source.num_classes)
        if count < 2:
            raise ConfigError(
                f"data=class_pair needs a labelled data.source (its classes become the domains); {name} "
                f"is unlabelled (e.g. an image folder without class subfolders)."
            )
        names = class_names(self.source)
        if isinstance(value, int):
            if not 0 <= value < count:
                raise ConfigError(
                    f"data.{key}={value} is not a class of {name}: class indices run from 0 to {count - 1}."
                )
            return value
        if names:
            if value in names:
                return names.index(value)
            folded = [n.casefold() for n in names]
            if value.casefold() in folded:
                return folded.index(value.casefold())
        if value.strip().lstrip("-").isdigit():
            return self._resolve(key, int(value))
        if not names:
            raise ConfigError(
                f"data.{key}={value!r}: {name} has no class names; give a class index from 0 to {count - 1}."
            )
        raise ConfigError(f"data.{key}={value!r} is not a class of {name}; its classes: {', '.join(names)}.")

    def class_labels(self) -> tuple[int, int]:
        """The source labels of domain A and domain B (``class_a`` and ``class_b`` resolved)."""
        if self._classes is None:
            a, b = self._resolve("class_a", self.class_a), self._resolve("class_b", self.class_b)
            if a == b:
                raise ConfigError(
                    f"data.class_a={self.class_a!r} and data.class_b={self.class_b!r} are the same class "
                    f"({a}); pick two different classes."
                )
            self._classes = (a, b)
        return self._classes

    def _class_label(self, label: int) -> str:
        names = class_names(self.source)
        return f"{names[label]!r} ({label})" if names and label < len(names) else str(label)

    @property
    def domain_names(self) -> tuple[str, str]:
        names = class_names(self.source)
        a, b = self.class_labels()
        if names:
            return names[a], names[b]
        return str(a), str(b)

    def source_indices(self) -> dict[str, list[int]]:
        """Which items of the source each part holds: ``train_a``, ``val_a``, ``train_b``, ``val_b``."""
        domains = (*self._domains(False), *self._domains(True))
        parts = ("train_a", "train_b", "val_a", "val_b")
        return {
            k: list(d.indices) for k, d in zip(parts, domains, strict=True) if isinstance(d, SourceDomain)
        }

    def check(self) -> None:
        """The source's checks, then the classes (names, indices, and that each has images)."""
        self.source.check()
        self.class_labels()
        self.setup("fit")

    def _build(self) -> tuple[Domain, Domain, Domain, Domain]:
        a, b = self.class_labels()
        labels = source_labels(self.source)
        domains: list[tuple[SourceDomain, SourceDomain]] = []
        for label, cls in enumerate((a, b)):
            members = torch.nonzero(labels == cls).flatten().tolist()
            if not members:
                raise DataError(
                    f"data=class_pair: class {self._class_label(cls)} of {_source_name(self.source)} has no "
                    f"images (the source has {len(labels)}); pick a class that does."
                )
            keep, held = held_out_split(len(members), self.val_fraction)
            domains.append(
                (
                    SourceDomain(self.source, [members[i] for i in keep], label),
                    SourceDomain(self.source, [members[i] for i in held], label),
                )
            )
        (train_a, held_a), (train_b, held_b) = domains
        return train_a, train_b, held_a, held_b
