"""Unpaired images of two domains for unpaired image-to-image translation (CycleGAN, Zhu et al. 2017);
the contract is :class:`UnpairedDataModule` (in :mod:`ganforge.data.translation`).

- :class:`UnpairedFolderDataModule` (``data=unpaired_folder``): CycleGAN's ``trainA/``, ``trainB/``,
  ``testA/``, ``testB/`` folders, in a folder or a .zip.
- :class:`DigitsTranslationDataModule` (``data=digits_translation``): a benchmark with a known
  answer, in :mod:`ganforge.data.digits_translation`.
- :class:`ClassPairDataModule` (``data=class_pair``): two classes of any labelled image data
  (e.g. CIFAR-10's horses and deer) as the two domains.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from ganforge.data.base import GANDataModule
from ganforge.data.digits_translation import (  # re-exported: unpaired.py was their home
    INK,  # noqa: F401
    PAPER,  # noqa: F401
    DigitsTranslationDataModule,  # noqa: F401
    load_digit_images,  # noqa: F401
    stroke_kernel,  # noqa: F401
    transform,  # noqa: F401
)
from ganforge.data.folder import scale, warn_if_upsampled
from ganforge.data.images import ImageFileOptions, ImageFiles
from ganforge.data.layouts import (  # index_cyclegan lives there (re-exported)
    CYCLEGAN_FOLDERS,  # noqa: F401
    CYCLEGAN_LAYOUT,  # noqa: F401
    CycleGANIndex,
    check_eval_split,
    index_cyclegan,
)
from ganforge.data.translation import (
    DOMAINS,
    Domain,
    PairedDataModule,
    SourceDomain,
    TensorDomain,  # noqa: F401  (re-exported, as the ones below marked so)
    UnpairedBatchSampler,  # noqa: F401
    UnpairedDataModule,
    UnpairedDataset,  # noqa: F401
    check_val_fraction,
    split_off,
)
from ganforge.errors import ConfigError, DataError
from ganforge.seeding import mix_seed

log = logging.getLogger(__name__)


class ImageFileDomain(ImageFiles, Domain):
    """Images of one domain decoded on demand from a folder or zip, unlabelled.

    ``items``: resized to ``resolution`` (shorter side, then a center square), nothing random.
    ``stream`` (training): the jitter of :class:`~ganforge.data.images.ImageFiles`, drawn by a
    generator seeded by ``mix_seed(seed, domain, v)``. An unreadable image is replaced by the next
    readable one (up to ``max_bad_fraction``).
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
        super().__init__(source, resolution, load_size, channels, flip, max_bad_fraction)
        self.members = list(members)
        self.seed = seed
        self.domain = domain
        self.where = f" of domain {DOMAINS[domain]}"

    def __len__(self) -> int:
        return len(self.members)

    def item_name(self, i: int) -> str:
        return self.members[i]

    def _readable(self, i: int, size: int) -> Tensor:
        return self.first_readable(i, lambda j: self.decode(self.members[j], size))[1]

    def _batch(self, xs: list[Tensor]) -> tuple[Tensor, Tensor]:
        """uint8 images as a batch in [-1, 1], unlabelled."""
        unlabelled = torch.full((len(xs),), -1, dtype=torch.long)
        if not xs:
            return torch.empty(
                (0, 1 if self.mode == "L" else 3, self.resolution, self.resolution)
            ), unlabelled
        return scale(torch.stack(xs)), unlabelled

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        return self._batch([self._readable(int(i), self.resolution) for i in indices])

    def augmented(self, v: int) -> Tensor:
        """The training crop of virtual index ``v`` (uint8): a pure function of (seed, domain, v)."""
        x = self._readable(v % len(self), self.load_size)
        return self.crop_flip([x], torch.Generator().manual_seed(mix_seed(self.seed, self.domain, v)))[0]

    def stream(self, vs: Sequence[int]) -> tuple[Tensor, Tensor]:
        return self._batch([self.augmented(int(v)) for v in vs])


class UnpairedFolderDataModule(ImageFileOptions, UnpairedDataModule):
    """Unpaired images from a folder or .zip in CycleGAN's layout (e.g. ``horse2zebra.zip``).

    ``trainA/`` and ``trainB/`` hold the training images of the two domains (searched recursively),
    ``testA/`` and ``testB/`` the held-out ones; a single folder wrapping everything
    (``horse2zebra/``) is looked through. ``eval_split=val`` holds out ``valA/`` and ``valB/``
    instead, ``test`` requires ``testA/`` and ``testB/``; with ``auto`` a domain without its test
    folder holds out the last ``val_fraction`` of a permutation of its training images fixed by seed 0.
    Both domains are converted to ``channels`` and ``resolution`` (one warning line when the images
    are smaller). Training images are resized to ``load_size`` (None: ``round(resolution * 286 /
    256)``, CycleGAN's resize-then-random-crop), randomly cropped to ``resolution`` and flipped
    (``flip``), each domain by its own draws; held-out images are resized to ``resolution``.
    Unlabelled: labels are -1, ``num_classes`` 0, no ground truth. ``num_workers``: auto by default.
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
        eval_split: str = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**self._take_workers(kwargs))
        self._file_options(path, resolution, load_size, flip, val_fraction, channels, max_bad_fraction)
        self.eval_split = check_eval_split(eval_split)
        self.num_classes = 0
        self._index: CycleGANIndex | None = None
        self._described = False  # the size warning and the summary line: once per module

    def _get_index(self) -> CycleGANIndex:
        if self._index is None:
            self._index = index_cyclegan(self.path, self.val_fraction, self.eval_split)
        return self._index

    @property
    def held_out_from(self) -> tuple[str, str]:
        """Where each domain's held-out images come from: "testA"/"testB", or "val_fraction"."""
        return self._get_index().held_out_from

    def check(self) -> None:
        """Index the images: one-line :class:`DataError` s for a missing path, layout or domain; the
        first time, one line on what was found and a warning when the training images are upsampled."""
        index = self._get_index()
        if self._described:
            return
        self._described = True
        where = os.path.abspath(self.path)
        parts = [
            f"domain {side} {len(train)} training and {len(held)} held-out images "
            f"({held_from + '/' if held_from != 'val_fraction' else 'val_fraction'})"
            for side, train, held, held_from in zip(
                ("A", "B"), index.train, index.held_out, index.held_out_from, strict=True
            )
        ]
        log.info("%s: %s (data.eval_split=%s)", where, "; ".join(parts), self.eval_split)
        sizes = []
        for domain, members in enumerate(index.train):
            files = self._domain(members, domain)
            sizes += files.spread_sizes(lambda i, files=files: files.image_size(files.members[i]), 8)
        warn_if_upsampled(sizes, self.resolution, where)

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
            train, held = split_off(members, None, self.val_fraction)
            domains.append((SourceDomain(self.source, train, label), SourceDomain(self.source, held, label)))
        (train_a, held_a), (train_b, held_b) = domains
        return train_a, train_b, held_a, held_b
