"""Paired images for image-to-image translation (pix2pix): each sample is a source image (G's input)
and the target image G should produce from it (the contract: :class:`PairedDataModule`).

:class:`PairedFolderDataModule` reads pairs from a folder or a .zip in one of two layouts:
``A/`` and ``B/`` folders of namesake images, or pix2pix's side-by-side ``AB`` images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ganforge.data.folder import fit_square, scale, to_tensor, warn_if_upsampled
from ganforge.data.images import ImageFileOptions, ImageFiles
from ganforge.data.layouts import (  # index_pairs and its types live there (re-exported)
    LAYOUTS,
    SIDES,  # noqa: F401
    SPLITS,  # noqa: F401
    Pair,
    PairIndex,
    check_eval_split,
    index_pairs,
)
from ganforge.data.translation import (
    HELD_OUT_SEED,  # noqa: F401  (re-exported: paired.py was its home)
    EpochIndexSampler,  # noqa: F401
    PairedDataModule,
    held_out_split,  # noqa: F401
)
from ganforge.errors import ConfigError, DataError
from ganforge.seeding import mix_seed

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")


class PairedImageDataset(ImageFiles, Dataset):
    """Decodes pairs on demand: ``(source, target, label)`` batches through ``__getitems__``.

    ``augment=True`` (training): indices are virtual (``v % len`` is the pair), each pair is resized
    to ``load_size``, then randomly cropped to ``resolution`` and maybe flipped, the same way for
    both images, with a generator seeded by ``mix_seed(seed, v)``. ``augment=False`` (held-out,
    :meth:`items`): resized to ``resolution``, nothing random. An unreadable pair is replaced by the
    next readable one (up to ``max_bad_fraction``); pairs of unequal sizes are a :class:`DataError`.
    """

    noun = "pair"

    def __init__(
        self,
        source: str,
        pairs: list[Pair],
        layout: str,
        resolution: int,
        load_size: int,
        channels: int = 3,
        direction: str = "AtoB",
        flip: bool = True,
        augment: bool = True,
        seed: int = 0,
        max_bad_fraction: float = 0.01,
    ) -> None:
        super().__init__(
            source, resolution, load_size if augment else resolution, channels, flip, max_bad_fraction
        )
        self.pairs = list(pairs)
        self.layout = layout
        self.swap = direction == "BtoA"
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def item_name(self, i: int) -> str:
        return self.pairs[i].name

    def sizes(self, i: int) -> tuple[int, int]:
        """Read only the headers of pair ``i``: (width, height) of one of its images; a
        :class:`DataError` when its images cannot pair."""
        pair = self.pairs[i]
        with self.open(pair.a) as a:
            size_a = a.size
        if pair.b is None:
            self._check_side_by_side(pair, size_a)
            return size_a[0] // 2, size_a[1]
        with self.open(pair.b) as b:
            self._check_ab(pair, size_a, b.size)
        return size_a

    def _check_ab(self, pair: Pair, size_a: tuple[int, int], size_b: tuple[int, int]) -> None:
        if size_a != size_b:
            raise DataError(
                f"{self.source}: the A and B images of a pair must have the same size, but {pair.a} is "
                f"{size_a[0]}x{size_a[1]} and {pair.b} is {size_b[0]}x{size_b[1]}."
            )

    def _check_side_by_side(self, pair: Pair, size: tuple[int, int]) -> None:
        w, h = size
        if w != 2 * h:
            raise DataError(
                f"{self.source}: {pair.a} is {w}x{h}, but a side-by-side AB image is twice as wide as "
                f"high (left half A, right half B); fix the image or use data.layout=ab_folders."
            )

    def _decode(self, i: int) -> list[Tensor]:
        """The A and B images of pair ``i`` as uint8 (C, S, S) tensors, S = the load size."""
        pair, s = self.pairs[i], self.load_size
        if pair.b is None:
            ab = self.read(pair.a, (2 * s, s), lambda size: self._check_side_by_side(pair, size))
            half, h = ab.size[0] // 2, ab.size[1]
            return [to_tensor(fit_square(ab.crop((x, 0, x + half, h)), s)) for x in (0, half)]
        size_a: list[tuple[int, int]] = []  # A's stored size, for the check of B's
        a = self.decode(pair.a, s, size_a.append)
        return [a, self.decode(pair.b, s, lambda size_b: self._check_ab(pair, size_a[0], size_b))]

    def item(self, v: int) -> tuple[Tensor, Tensor, int]:
        """(source, target, label) of (virtual) index ``v``: float tensors in [-1, 1]."""
        j, images = self.first_readable(v % len(self), self._decode)
        if self.augment:
            images = self.crop_flip(images, torch.Generator().manual_seed(mix_seed(self.seed, v)))
        a, b = images[::-1] if self.swap else images
        return scale(a), scale(b), self.pairs[j].label

    def __getitem__(self, v: int) -> tuple[Tensor, Tensor, Tensor]:
        src, tgt, label = self.item(v)
        return src, tgt, torch.tensor(label, dtype=torch.long)

    def __getitems__(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        items = [self.item(int(v)) for v in indices]
        return (
            torch.stack([s for s, _, _ in items]),
            torch.stack([t for _, t, _ in items]),
            torch.tensor([y for _, _, y in items], dtype=torch.long),
        )


class PairedFolderDataModule(ImageFileOptions, PairedDataModule):
    """Pairs of images from a folder or .zip, for pix2pix-style translation.

    Layouts (``layout=auto`` detects them): ``ab_folders``, ``A/`` and ``B/`` folders whose images
    pair by relative path without extension (at the top, or as ``train/A``, ``train/B``, ``val/A``,
    ... ); ``side_by_side``, pix2pix's AB images (left half A, right half B) in ``train/``, ``val/``,
    ``test/``. A single folder wrapping everything (``facades/``) is looked through. ``direction``
    picks the source side. The held-out split (metrics, grids) is ``eval_split``'s folder, ``val/`` or
    ``test/``; ``auto``: ``val/``, else ``test/``, else the last ``val_fraction`` of a permutation fixed
    by seed 0. Training pairs are resized to ``load_size`` (None: ``round(resolution * 286 / 256)``,
    pix2pix's jitter), randomly cropped to ``resolution`` and flipped (``flip``), identically for both
    images; held-out pairs are resized to ``resolution``. Images smaller than ``resolution`` get one
    warning line; ``num_workers`` is auto by default (:func:`~ganforge.data.folder.auto_workers`).
    """

    def __init__(
        self,
        path: str,
        layout: str = "auto",
        direction: str = "AtoB",
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
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
        if direction not in DIRECTIONS:
            raise ConfigError(f"data.direction must be AtoB or BtoA, got {direction!r}.")
        self._file_options(path, resolution, load_size, flip, val_fraction, channels, max_bad_fraction)
        self.layout = layout
        self.direction = direction
        self.eval_split = check_eval_split(eval_split)
        self.source_shape = self.data_shape
        self._index: PairIndex | None = None
        self._described = False  # the size warning and the summary line: once per module
        self._eval: PairedImageDataset | None = None
        self._held_out: PairedImageDataset | None = None

    # --- index ----------------------------------------------------------------------------------
    def _get_index(self) -> PairIndex:
        if self._index is None:
            self._index = index_pairs(self.path, self.layout, self.val_fraction, self.eval_split)
        return self._index

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Number of class subfolders of the pairs (0: unlabelled); lists the files on first use."""
        return len(self._get_index().classes)

    @property
    def classes(self) -> list[str]:
        return list(self._get_index().classes)

    @property
    def held_out_from(self) -> str:
        """Where the held-out pairs come from: "val", "test" or "val_fraction"."""
        return self._get_index().held_out_from

    def _dataset(self, pairs: list[Pair], augment: bool) -> PairedImageDataset:
        index = self._get_index()
        return PairedImageDataset(
            os.path.abspath(self.path),
            pairs,
            index.layout,
            self.resolution,
            self.load_size,
            self.channels,
            self.direction,
            self.flip,
            augment,
            self.seed,
            self.max_bad_fraction,
        )

    def check(self, sample: int = 16) -> None:
        """Index the pairs (one-line :class:`DataError` s) and read the sizes of ``sample`` of them; the
        first time, one line on what was found and a warning when the images are upsampled."""
        index = self._get_index()
        found: list[tuple[int, int]] = []
        for pairs in (index.train, index.held_out):
            if not pairs:
                continue
            ds = self._dataset(pairs, augment=False)
            for i in sorted(set(np.linspace(0, len(pairs) - 1, min(sample, len(pairs))).astype(int))):
                try:
                    found.append(ds.sizes(int(i)))
                except DataError:
                    raise
                except Exception:  # an unreadable file: the loader skips it (max_bad_fraction)
                    continue
        if not self._described:
            self._described = True
            where = str(os.path.abspath(self.path))
            held = f"{index.held_out_from}/" if index.held_out_from != "val_fraction" else "val_fraction"
            log.info(
                "%s: %d training pairs, %d held-out pairs from %s (data.eval_split=%s), layout %s",
                where,
                len(index.train),
                len(index.held_out),
                held,
                self.eval_split,
                index.layout,
            )
            warn_if_upsampled(found, self.resolution, where, "pairs' images")

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        self.check()
        index = self._get_index()
        self.dataset = self._dataset(index.train, augment=True)
        self._eval = self._dataset(index.train, augment=False)
        self._held_out = self._dataset(index.held_out, augment=False)

    def num_items(self) -> int:
        return len(self._get_index().train)

    def items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor]:
        if self._eval is None:
            self.setup("fit")
        assert self._eval is not None
        _, target, label = self._eval.__getitems__(list(indices))
        return target, label

    def num_val_items(self) -> int:
        return len(self._get_index().held_out)

    def val_items(self, indices: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        if self._held_out is None:
            self.setup("fit")
        assert self._held_out is not None
        return self._held_out.__getitems__(self._check_val_indices(indices))

    @property
    def num_bad(self) -> int:
        """Unreadable pairs met so far by the training loader in this process."""
        return len(self.dataset.bad_indices) if isinstance(self.dataset, PairedImageDataset) else 0
