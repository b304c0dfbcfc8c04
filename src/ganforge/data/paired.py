"""Paired images for image-to-image translation (pix2pix): each sample is a source image (G's input)
and the target image G should produce from it.

A :class:`PairedDataModule` streams ``(source, target, label)`` batches with the same contract as
every ganforge dataset: batch ``k`` of the stream is a pure function of ``(seed, rank, world, k)``,
random crops and flips included, so a resumed run sees exactly the pairs of an uninterrupted one.
It also holds a fixed held-out split (the same for every run seed) for evaluation.

:class:`PairedFolderDataModule` reads pairs from a folder or a .zip in one of two layouts:
``A/`` and ``B/`` folders of namesake images, or pix2pix's side-by-side ``AB`` images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ganforge.data.base import GANDataModule, InfiniteBatchSampler, mix_seed
from ganforge.data.folder import FileSource, existing_source, list_images
from ganforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

HELD_OUT_SEED = 0  # the held-out split ignores the run seed: every run evaluates on the same items
SPLITS = ("train", "val", "test")
SIDES = ("A", "B")
LAYOUTS = ("auto", "ab_folders", "side_by_side")
DIRECTIONS = ("AtoB", "BtoA")
PIX2PIX_JITTER = 286 / 256  # pix2pix resizes 256 px images to 286, then random-crops 256


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


def file_options(
    resolution: int, load_size: int | None, channels: int, max_bad_fraction: float
) -> tuple[int, int]:
    """(resolution, load size) of image files read with pix2pix's resize-then-random-crop jitter
    (``load_size`` None: resolution·286/256); one-line ConfigErrors for values that cannot work."""
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
    if int(resolution) < 1:
        raise ConfigError(f"data.resolution must be a positive integer, got {resolution}.")
    resolution = int(resolution)
    load = round(resolution * PIX2PIX_JITTER) if load_size is None else int(load_size)
    if load < resolution:
        raise ConfigError(
            f"data.load_size={load_size} must be at least data.resolution={resolution} "
            f"(training images are resized to load_size, then randomly cropped to resolution)."
        )
    if not 0.0 <= float(max_bad_fraction) <= 1.0:
        raise ConfigError(f"data.max_bad_fraction must lie in [0, 1], got {max_bad_fraction}.")
    return resolution, load


def check_val_fraction(val_fraction: float) -> float:
    value = float(val_fraction)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"data.val_fraction must lie in [0, 1), got {val_fraction}.")
    return value


class EpochIndexSampler(InfiniteBatchSampler):
    """:class:`InfiniteBatchSampler` yielding *virtual* indices ``epoch * num_items + i``.

    The dataset maps ``v % num_items`` to the item and seeds the item's randomness (crop, flip,
    noise, holes) with ``mix_seed(seed, v)``: pure functions of the stream position, so resuming at
    any batch is exact, and every epoch draws new augmentations.
    """

    virtual = True


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

    # --- what subclasses implement --------------------------------------------------------------
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

    # --- shared ---------------------------------------------------------------------------------
    def _check_val_indices(self, indices: Sequence[int]) -> list[int]:
        n = self.num_val_items()
        out = [int(i) for i in indices]
        bad = [i for i in out if not 0 <= i < n]
        if bad:
            raise IndexError(f"held-out index {bad[0]} out of range: the held-out split has {n} items")
        return out

    def batch_sampler(self, start: int, rank: int, world: int) -> EpochIndexSampler:
        """Virtual indices: each item's crop, flip, noise or holes follow its position in the stream."""
        return EpochIndexSampler(
            self.num_items(), self.step_batch_size, self.seed, start, rank, world, self.steps_per_batch
        )

    def real_batch(self, n: int, seed: int = 0) -> Tensor:
        """``n`` training targets, drawn reproducibly: for plots and metrics."""
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(self.num_items(), (n,), generator=gen).tolist()
        return self.items(idx)[0]


# --- the paired folder ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One pair: the A and B members (B is None for a side-by-side image), its name and label."""

    a: str
    b: str | None
    name: str
    label: int


@dataclass
class PairIndex:
    """The pairs of a paired folder, split into training and held-out, with the class names."""

    layout: str
    train: list[Pair]
    held_out: list[Pair]
    held_out_from: str
    classes: list[str]


def wrapper_prefix(names: list[str], layout_folders: set[str] | frozenset[str]) -> str:
    """The prefix of single folders wrapping every name (``facades/`` of ``facades/train/1.jpg``), up to
    the first folder of the layout (``layout_folders``: A, B, train, ... or trainA, testB, ...)."""
    prefix = ""
    rest = names
    while rest:
        tops = {PurePosixPath(n).parts[0] for n in rest}
        if len(tops) != 1 or any(len(PurePosixPath(n).parts) < 2 for n in rest):
            break
        top = tops.pop()
        if top in layout_folders:
            break
        prefix += top + "/"
        rest = [n[len(top) + 1 :] for n in rest]
    return prefix


def _stem(rel: str) -> str:
    """The pairing key: the relative path without its extension."""
    return PurePosixPath(rel).with_suffix("").as_posix()


def _examples(names: Iterable[str], k: int = 3) -> str:
    names = sorted(names)
    more = ", ..." if len(names) > k else ""
    return ", ".join(names[:k]) + more


def _labels(keys: list[str]) -> tuple[list[int], list[str]]:
    """Labels by parent folder name (as folder.py does); -1 for all when that is not a class structure."""
    parents = [PurePosixPath(k).parent for k in keys]
    if len(set(parents)) <= 1 or any(p == PurePosixPath(".") for p in parents):
        return [-1] * len(keys), []
    classes = sorted({p.name for p in parents})
    to_index = {c: i for i, c in enumerate(classes)}
    return [to_index[p.name] for p in parents], classes


def index_pairs(path: str | os.PathLike, layout: str = "auto", val_fraction: float = 0.1) -> PairIndex:
    """Find the pairs of ``path`` (a folder or .zip); raises one-line :class:`DataError` s."""
    p = existing_source(path, "paired image", "of image pairs")
    shown = p.resolve()
    names = list_images(p)
    expected = (
        "expected A/ and B/ folders whose images pair by matching file names (optionally inside "
        "train/, val/, test/), or side-by-side AB images (width = 2 x height, left half A) in "
        "train/, val/, test/ (pix2pix's layout)"
    )
    if not names:
        raise DataError(f"{shown} holds no images; {expected}.")
    prefix = wrapper_prefix(names, {*SIDES, *SPLITS})
    rel = [n[len(prefix) :] for n in names]
    # (split or "", side or "") -> {pairing key: member}
    groups: dict[tuple[str, str], dict[str, str]] = {}
    loose: list[str] = []
    for name, r in zip(names, rel, strict=True):
        parts = PurePosixPath(r).parts
        if len(parts) > 1 and parts[0] in SIDES:
            group, key = ("", parts[0]), "/".join(parts[1:])
        elif len(parts) > 2 and parts[0] in SPLITS and parts[1] in SIDES:
            group, key = (parts[0], parts[1]), "/".join(parts[2:])
        elif len(parts) > 1 and parts[0] in SPLITS:
            group, key = (parts[0], ""), "/".join(parts[1:])
        else:
            loose.append(name)
            continue
        stem = _stem(key)
        members = groups.setdefault(group, {})
        if stem in members:
            where = "/".join(x for x in group if x)
            raise DataError(
                f"{shown}: {members[stem]} and {name} have the same name apart from the extension, so "
                f"the pairs of {where}/ are ambiguous; keep one of them."
            )
        members[stem] = name
    has_ab = any(side for _, side in groups)
    has_sbs = any(split and not side for split, side in groups)
    if layout not in LAYOUTS:
        raise ConfigError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
    if layout == "auto":
        if not (has_ab or has_sbs):
            raise DataError(
                f"{shown} matches neither paired layout: {expected}. Found {len(names)} images, "
                f"e.g. {_examples(names)}."
            )
        layout = "ab_folders" if has_ab else "side_by_side"
    if layout == "ab_folders":
        return _index_ab(shown, groups, val_fraction, expected)
    return _index_side_by_side(shown, groups, loose, prefix, val_fraction)


def _split_by_fraction(pairs: list[Pair], val_fraction: float) -> tuple[list[Pair], list[Pair]]:
    train, held = held_out_split(len(pairs), val_fraction)
    return [pairs[i] for i in train], [pairs[i] for i in held]


def _relabel(train: list[Pair], held: list[Pair]) -> tuple[list[Pair], list[Pair], list[str]]:
    """Label every pair by its parent folder, with one set of classes across both splits."""
    everything = train + held
    labels, classes = _labels([q.name for q in everything])
    out = [Pair(q.a, q.b, q.name, y) for q, y in zip(everything, labels, strict=True)]
    return out[: len(train)], out[len(train) :], classes


def _index_ab(
    shown: Path, groups: dict[tuple[str, str], dict[str, str]], val_fraction: float, expected: str
) -> PairIndex:
    splits = sorted({split for split, side in groups if side})
    if not splits:
        raise DataError(f"{shown} has no A/ and B/ folders (data.layout=ab_folders); {expected}.")
    if "" in splits and len(splits) > 1:
        raise DataError(
            f"{shown} has A/ and B/ folders both at its top and inside {', '.join(s for s in splits if s)}/; "
            f"keep one of the two arrangements."
        )

    def pairs_of(split: str) -> list[Pair]:
        a, b = groups.get((split, "A"), {}), groups.get((split, "B"), {})
        where = f"{split}/" if split else ""
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if only_a or only_b:
            raise DataError(
                f"{shown}: the images of {where}A/ and {where}B/ pair by name (path without extension), "
                f"but {len(only_a)} of the {len(a)} in {where}A/ have no namesake in {where}B/"
                f"{' (e.g. ' + _examples(only_a) + ')' if only_a else ''} and {len(only_b)} of the "
                f"{len(b)} in {where}B/ have none in {where}A/"
                f"{' (e.g. ' + _examples(only_b) + ')' if only_b else ''}."
            )
        return [Pair(a[k], b[k], k, -1) for k in sorted(a)]

    if splits == [""]:
        train, held = _split_by_fraction(pairs_of(""), val_fraction)
        source = "val_fraction"
    else:
        if "train" not in splits:
            raise DataError(f"{shown} has no training pairs: expected train/A/ and train/B/ folders.")
        train = pairs_of("train")
        source = "val" if "val" in splits else "test" if "test" in splits else "val_fraction"
        if source == "val_fraction":
            train, held = _split_by_fraction(train, val_fraction)
        else:
            held = pairs_of(source)
    train, held, classes = _relabel(train, held)
    return PairIndex("ab_folders", train, held, source, classes)


def _index_side_by_side(
    shown: Path,
    groups: dict[tuple[str, str], dict[str, str]],
    loose: list[str],
    prefix: str,
    val_fraction: float,
) -> PairIndex:
    splits = {split: members for (split, side), members in groups.items() if split and not side}

    def pairs_of(members: dict[str, str]) -> list[Pair]:
        return [Pair(members[k], None, k, -1) for k in sorted(members)]

    if not splits:  # forced side_by_side on a folder without train/ val/ test/: every image trains
        names = sorted(loose)
        if not names:
            raise DataError(f"{shown} holds no side-by-side AB images (data.layout=side_by_side).")
        train, held = _split_by_fraction(pairs_of({_stem(n[len(prefix) :]): n for n in names}), val_fraction)
        source = "val_fraction"
    else:
        if "train" not in splits:
            raise DataError(
                f"{shown} has no training images: side-by-side AB images go in train/ "
                f"(found only {', '.join(s + '/' for s in sorted(splits))})."
            )
        train = pairs_of(splits["train"])
        source = "val" if "val" in splits else "test" if "test" in splits else "val_fraction"
        if source == "val_fraction":
            train, held = _split_by_fraction(train, val_fraction)
        else:
            held = pairs_of(splits[source])
    train, held, classes = _relabel(train, held)
    return PairIndex("side_by_side", train, held, source, classes)


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size`` (bicubic) and center-crop a square, as folder.load_image does."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _to_tensor(img: Image.Image) -> Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)


def _scale(x: Tensor) -> Tensor:
    return x.float().div_(127.5).sub_(1.0)


class PairedImageDataset(FileSource, Dataset):
    """Decodes pairs on demand: ``(source, target, label)`` batches through ``__getitems__``.

    ``augment=True`` (training): indices are virtual (``v % len`` is the pair), each pair is resized
    to ``load_size``, then randomly cropped to ``resolution`` and maybe flipped, the same way for
    both images, with a generator seeded by ``mix_seed(seed, v)``. ``augment=False`` (held-out,
    :meth:`items`): resized to ``resolution``, nothing random. An unreadable pair is replaced by the
    next readable one (up to ``max_bad_fraction``); pairs of unequal sizes are a :class:`DataError`.
    Picklable for DataLoader workers: the zip handle is opened lazily per process.
    """

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
        super().__init__(source, max_bad_fraction)
        self.pairs = list(pairs)
        self.layout = layout
        self.resolution = resolution
        self.load_size = load_size if augment else resolution
        self.mode = "L" if channels == 1 else "RGB"
        self.swap = direction == "BtoA"
        self.flip = flip
        self.augment = augment
        self.seed = seed

    noun = "pair"

    def __len__(self) -> int:
        return len(self.pairs)

    def item_name(self, i: int) -> str:
        return self.pairs[i].name

    def _open(self, member: str) -> Image.Image:
        return Image.open(self.member_file(member))

    def sizes(self, i: int) -> None:
        """Read only the headers of pair ``i``: a :class:`DataError` when its images cannot pair."""
        pair = self.pairs[i]
        with self._open(pair.a) as a:
            size_a = a.size
        if pair.b is None:
            self._check_side_by_side(pair, size_a)
            return
        with self._open(pair.b) as b:
            self._check_ab(pair, size_a, b.size)

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

    def _load(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        img.draft(self.mode, size)  # JPEG only: decode at a reduced scale, still >= size
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        return img.convert(self.mode)

    def _decode(self, i: int) -> tuple[Tensor, Tensor]:
        """The A and B images of pair ``i`` as uint8 (C, S, S) tensors, S = the load size."""
        pair, s = self.pairs[i], self.load_size
        if pair.b is None:
            with self._open(pair.a) as img:
                self._check_side_by_side(pair, img.size)
                ab = self._load(img, (2 * s, s))
            half = ab.size[0] // 2
            a, b = ab.crop((0, 0, half, ab.size[1])), ab.crop((half, 0, 2 * half, ab.size[1]))
        else:
            with self._open(pair.a) as img_a, self._open(pair.b) as img_b:
                self._check_ab(pair, img_a.size, img_b.size)
                a, b = self._load(img_a, (s, s)), self._load(img_b, (s, s))
        return _to_tensor(fit_square(a, s)), _to_tensor(fit_square(b, s))

    def item(self, v: int) -> tuple[Tensor, Tensor, int]:
        """(source, target, label) of (virtual) index ``v``: float tensors in [-1, 1]."""
        j, (a, b) = self.first_readable(v % len(self), self._decode)
        if self.augment:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, v))
            room = self.load_size - self.resolution
            top, left = (int(t) for t in torch.randint(room + 1, (2,), generator=gen))
            flip = bool(torch.rand((), generator=gen) < 0.5) and self.flip
            r = self.resolution
            a, b = a[:, top : top + r, left : left + r], b[:, top : top + r, left : left + r]
            if flip:
                a, b = a.flip(-1), b.flip(-1)
        if self.swap:
            a, b = b, a
        return _scale(a), _scale(b), self.pairs[j].label

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


class PairedFolderDataModule(PairedDataModule):
    """Pairs of images from a folder or .zip, for pix2pix-style translation.

    Layouts (``layout=auto`` detects them): ``ab_folders``, ``A/`` and ``B/`` folders whose images
    pair by relative path without extension (at the top, or as ``train/A``, ``train/B``, ``val/A``,
    ... ); ``side_by_side``, pix2pix's AB images (left half A, right half B) in ``train/``, ``val/``,
    ``test/``. A single folder wrapping everything (``facades/``) is looked through. ``direction``
    picks the source side. The held-out split is ``val/`` (else ``test/``), else the last
    ``val_fraction`` of a permutation fixed by seed 0. Training pairs are resized to ``load_size``
    (None: ``round(resolution * 286 / 256)``, pix2pix's jitter), randomly cropped to ``resolution``
    and flipped (``flip``), identically for both images; held-out pairs are resized to ``resolution``.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if layout not in LAYOUTS:
            raise ConfigError(f"data.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
        if direction not in DIRECTIONS:
            raise ConfigError(f"data.direction must be AtoB or BtoA, got {direction!r}.")
        resolution, load = file_options(resolution, load_size, channels, max_bad_fraction)
        self.path = str(path)
        self.layout = layout
        self.direction = direction
        self.resolution = resolution
        self.load_size = load
        self.flip = bool(flip)
        self.val_fraction = check_val_fraction(val_fraction)
        self.channels = int(channels)
        self.max_bad_fraction = float(max_bad_fraction)
        self.data_shape = (self.channels, resolution, resolution)
        self.source_shape = self.data_shape
        self._index: PairIndex | None = None
        self._eval: PairedImageDataset | None = None
        self._held_out: PairedImageDataset | None = None

    # --- index ----------------------------------------------------------------------------------
    def _get_index(self) -> PairIndex:
        if self._index is None:
            self._index = index_pairs(self.path, self.layout, self.val_fraction)
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
        """Index the pairs (one-line :class:`DataError` s) and read the sizes of ``sample`` of them."""
        index = self._get_index()
        for pairs in (index.train, index.held_out):
            if not pairs:
                continue
            ds = self._dataset(pairs, augment=False)
            for i in sorted(set(np.linspace(0, len(pairs) - 1, min(sample, len(pairs))).astype(int))):
                try:
                    ds.sizes(int(i))
                except DataError:
                    raise
                except Exception:  # an unreadable file: the loader skips it (max_bad_fraction)
                    continue

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
