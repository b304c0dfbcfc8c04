"""Images from a folder or a .zip (read in place), labelled by their parent folder, decoded per item."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ganforge.cpu import usable_cpus
from ganforge.data.base import GANDataModule
from ganforge.errors import ConfigError, DataError

log = logging.getLogger(__name__)

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
MAX_WORKERS = 4  # data.num_workers=auto on a GPU: at most this many decoding processes per training process


# --- data.num_workers=auto ----------------------------------------------------------------------------
def check_workers(value: Any) -> int | str:
    """``data.num_workers`` checked: ``auto`` or a non-negative integer; else a one-line ConfigError."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ConfigError(
        f"data.num_workers must be a non-negative integer (0: load in this process) or auto, got {value!r}"
    )


def auto_workers(trainer: Any = None) -> int:
    """What ``data.num_workers=auto`` means: 0 when training on the CPU, where decoding was never the
    bottleneck (2 cores, one training thread: 600 steps of the 32 px pix2pix CPU preset in 74.9 s with
    0 workers and 81.0 s with 1; CycleGAN 122.2 and 121.5 s; 256 px JPEGs 57.5 and 56.3 s for 400), so
    a worker would only take memory and a CPU; on a GPU, one per usable CPU left to each training
    process on the node, at most :data:`MAX_WORKERS`. Without a trainer, a CUDA device stands for it."""
    if trainer is not None:
        from pytorch_lightning.accelerators import CPUAccelerator

        on_cpu, processes = isinstance(trainer.accelerator, CPUAccelerator), max(1, trainer.num_devices)
    else:
        on_cpu, processes = not torch.cuda.is_available(), 1
    return 0 if on_cpu else max(0, min(MAX_WORKERS, usable_cpus() // processes - 1))


class AutoWorkers:
    """A data module mixin for ``data.num_workers=auto`` (the folder modules' default): the count is
    :func:`auto_workers` of the trainer that asks for the loader; an integer is taken as it is."""

    workers_setting: int | str = 0

    def _take_workers(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments with ``num_workers`` checked and resolved for now."""
        self.workers_setting = check_workers(kwargs.get("num_workers", "auto"))
        auto = self.workers_setting == "auto"
        return {**kwargs, "num_workers": auto_workers() if auto else self.workers_setting}

    def train_dataloader(self) -> Any:
        if self.workers_setting == "auto":
            self.num_workers = auto_workers(getattr(self, "trainer", None))
        return super().train_dataloader()  # type: ignore[misc]


# --- images smaller than data.resolution ---------------------------------------------------------------
def warn_if_upsampled(
    sizes: list[tuple[int, int]], resolution: int, where: str, what: str = "images"
) -> bool:
    """One warning line when the images read (``sizes``, (width, height) each) have a shorter side below
    ``resolution``: each is enlarged to it, so G and D learn interpolation blur. True when it warned."""
    if not sizes:
        return False
    w, h = min(sizes, key=min)
    side = min(w, h)
    if side >= resolution:
        return False
    log.warning(
        "%s: the %s are small (%dx%d px, the smallest of %d read) for data.resolution=%d: they are "
        "upsampled %.3gx; set data.resolution=%d (or lower) to train at their own size",
        where,
        what,
        w,
        h,
        len(sizes),
        resolution,
        resolution / side,
        side,
    )
    return True


def _is_image(name: str) -> bool:
    """True for an image file name that is not hidden or macOS zip metadata."""
    parts = PurePosixPath(name).parts
    if not parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(path: str | os.PathLike) -> list[str]:
    """Sorted POSIX paths of the images in a folder (relative to it) or a zip (member names), recursively."""
    p = Path(path)
    if p.is_dir():
        names = [f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file()]
    else:
        try:
            with zipfile.ZipFile(p) as zf:
                names = [m.filename for m in zf.infolist() if not m.is_dir()]
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"Cannot open {p.resolve()} as a zip archive ({exc}).") from None
    return sorted(n for n in names if _is_image(n))


@dataclass
class ImageIndex:
    """The images of a source with their class labels (-1 when unlabelled) and the class names."""

    members: list[str]
    labels: list[int]
    classes: list[str]


def existing_source(path: str | os.PathLike, kind: str = "image", holding: str = "of images") -> Path:
    """``path`` when it is a folder or a .zip; else a one-line DataError (``kind``: "paired image", ...;
    ``holding``: what data.path should hold, for the message)."""
    p = Path(path)
    shown = p.resolve()
    if not p.exists():
        raise DataError(
            f"The {kind} folder or zip {shown} does not exist. Set data.path=/path/to/data "
            f"(a folder or a .zip {holding}) to a path that exists."
        )
    if not p.is_dir() and not zipfile.is_zipfile(p):
        raise DataError(f"data.path={shown} is neither a folder nor a .zip archive of images.")
    return p


def index_images(path: str | os.PathLike) -> ImageIndex:
    """List the images of ``path`` and label them by parent folder name (sorted), or -1 if all share one."""
    p = existing_source(path)
    shown = p.resolve()
    members = list_images(p)
    if not members:
        kind = "folder" if p.is_dir() else "zip archive"
        raise DataError(
            f"The {kind} {shown} holds no images: searched it recursively for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)} (any case). Point data.path at a folder or zip that holds images."
        )
    parents = [PurePosixPath(m).parent for m in members]
    if len(set(parents)) == 1:
        return ImageIndex(members, [-1] * len(members), [])
    top = [m for m, parent in zip(members, parents, strict=True) if parent == PurePosixPath(".")]
    if top:
        raise DataError(
            f"{shown} mixes images at its top level (e.g. {top[0]}) with images in subfolders, so the "
            f"classes (= subfolder names) are ambiguous. Put all images in class subfolders, or all at "
            f"the top level for unlabelled data."
        )
    classes = sorted({parent.name for parent in parents})
    to_index = {name: i for i, name in enumerate(classes)}
    return ImageIndex(members, [to_index[parent.name] for parent in parents], classes)


def convert_image(img: Image.Image, mode: str, size: tuple[int, int]) -> Image.Image:
    """``img`` converted to ``mode``; a JPEG is decoded at a reduced scale still >= ``size``, and a
    palette with a transparent colour goes through RGBA (as PIL advises) before the conversion."""
    img.draft(mode, size)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert(mode)


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Scale the shorter side to ``size`` (bicubic) and center-crop a square."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    factor = size / min(w, h)
    nw, nh = max(size, round(w * factor)), max(size, round(h * factor))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image | np.ndarray) -> Tensor:
    """An image as a uint8 (C, H, W) tensor."""
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
    return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)


def scale(x: Tensor) -> Tensor:
    """uint8 images to floats in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def load_image(data: bytes | str | io.BytesIO, resolution: int, mode: str) -> np.ndarray:
    """Decode an image, convert it to ``mode`` ("RGB"/"L"), scale its shorter side, center-crop a square."""
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(src) as img:
        img = convert_image(img, mode, (resolution, resolution))
    return np.asarray(fit_square(img, resolution), dtype=np.uint8)


class FileSource:
    """Reads the members of a folder or a .zip on demand and skips unreadable items up to a share.

    Picklable for DataLoader workers: the zip handle is opened lazily, once per process, and never
    pickled. ``bad_indices`` records the unreadable items this process met (each worker its own).
    Subclasses name their items (``noun``, ``where``, :meth:`item_name`) for the messages.
    """

    noun = "image"  # what one item is, in messages
    where = ""  # e.g. " of domain A"

    def __init__(self, source: str | os.PathLike, max_bad_fraction: float = 0.01) -> None:
        self.source = str(source)
        self.is_zip = not os.path.isdir(self.source)
        self.max_bad_fraction = max_bad_fraction
        self.bad_indices: set[int] = set()
        self.tried = bytearray()  # 1 at the items this process has decoded or tried to (sized on first use)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip"] = None
        state["_zip_pid"] = None
        return state

    def __len__(self) -> int:
        raise NotImplementedError

    def item_name(self, i: int) -> str:
        raise NotImplementedError

    @property
    def num_bad(self) -> int:
        """How many unreadable items this process has met so far."""
        return len(self.bad_indices)

    def member_file(self, member: str) -> str | io.BytesIO:
        """A member as something ``PIL.Image.open`` reads: its path, or its bytes from the zip."""
        if not self.is_zip:
            return os.path.join(self.source, member)
        if self._zip is None or self._zip_pid != os.getpid():  # a forked worker must not share the handle
            self._zip = zipfile.ZipFile(self.source)
            self._zip_pid = os.getpid()
        return io.BytesIO(self._zip.read(member))

    def mark_bad(self, i: int, exc: Exception) -> None:
        """Record item ``i`` as unreadable; a DataError once more than ``max_bad_fraction`` are."""
        if i in self.bad_indices:
            return
        self.bad_indices.add(i)
        name, why = self.item_name(i), f"{type(exc).__name__}: {exc}"
        log.warning("skipping unreadable %s %s in %s (%s)", self.noun, name, self.source, why)
        if len(self.bad_indices) > self.max_bad_fraction * len(self):
            tried = sum(self.tried) or len(self.bad_indices)
            raise DataError(
                f"{len(self.bad_indices)} of the {tried} {self.noun}s{self.where} read so far (of "
                f"{len(self)}) in {self.source} could not be read (latest: {name}: {why}), more than "
                f"data.max_bad_fraction={self.max_bad_fraction} allows. Remove or repair the broken files, "
                "or raise data.max_bad_fraction."
            )

    def probe(self, decode: Callable[[int], Any], count: int = 64) -> None:
        """Decode up to ``count`` items spread evenly over the source, before training: a DataError when
        none of them can be read (a broken zip, files of another format), counted over what was tried.
        Does not record anything: a source with a few broken items still trains and skips them."""
        n = len(self)
        indices = sorted({i * n // min(n, count) for i in range(min(n, count))})
        failure: Exception | None = None
        for i in indices:
            try:
                decode(i)
                return
            except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, ...)
                failure = failure or exc
        if failure is None or (len(indices) < n and self.max_bad_fraction >= 1.0):
            return
        spread = "" if len(indices) == n else f" (spread over all {n})"
        raise DataError(
            f"{len(indices)} of the {len(indices)} {self.noun}s{self.where} tried{spread} in {self.source} "
            f"could not be read (first: {self.item_name(indices[0])}: {type(failure).__name__}: {failure}). "
            "Remove or repair the broken files."
        )

    def spread_sizes(
        self, size_of: Callable[[int], tuple[int, int]], count: int = 16
    ) -> list[tuple[int, int]]:
        """The sizes ``size_of(i)`` (headers only) of up to ``count`` items spread evenly over the source;
        unreadable ones are left out (the loader skips them)."""
        n = len(self)
        out = []
        for i in sorted({i * n // min(n, count) for i in range(min(n, count))}):
            try:
                out.append(size_of(i))
            except DataError:
                raise
            except Exception:  # noqa: BLE001 - an unreadable file: the loader skips it (max_bad_fraction)
                continue
        return out

    def image_size(self, member: str) -> tuple[int, int]:
        """(width, height) of an image member, read from its header."""
        with Image.open(self.member_file(member)) as img:
            return img.size

    def first_readable(self, i: int, decode: Callable[[int], T]) -> tuple[int, T]:
        """(j, ``decode(j)``) for the first readable item from ``i`` on (wrapping around)."""
        n = len(self)
        if len(self.tried) != n:
            self.tried = bytearray(n)
        for step in range(n):
            j = (i + step) % n
            if j in self.bad_indices:
                continue
            self.tried[j] = 1
            try:
                return j, decode(j)
            except DataError:
                raise
            except (
                Exception
            ) as exc:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
                self.mark_bad(j, exc)
        raise DataError(f"None of the {n} {self.noun}s{self.where} in {self.source} could be read.")


class ImageFileDataset(FileSource, Dataset):
    """Decodes image files (or zip members) on demand; an unreadable one is replaced by the next readable."""

    def __init__(
        self,
        source: str,
        members: list[str],
        labels: list[int],
        resolution: int = 32,
        channels: int = 3,
        max_bad_fraction: float = 0.01,
    ) -> None:
        super().__init__(source, max_bad_fraction)
        self.members = list(members)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.resolution = resolution
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.members)

    def item_name(self, i: int) -> str:
        return self.members[i]

    def _decode(self, i: int) -> Tensor:
        return scale(to_tensor(load_image(self.member_file(self.members[i]), self.resolution, self.mode)))

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        j, x = self.first_readable(i, self._decode)
        return x, self.labels[j]


class ImageFolderDataModule(AutoWorkers, GANDataModule):
    """A folder or .zip of images (searched recursively), resized and center-cropped to a square;
    ``num_workers`` auto by default (:func:`auto_workers`)."""

    def __init__(
        self,
        path: str,
        resolution: int = 32,
        channels: int = 3,
        max_bad_fraction: float = 0.01,
        **kwargs,
    ) -> None:
        super().__init__(**self._take_workers(kwargs))
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
        if int(resolution) < 1:
            raise ConfigError(f"data.resolution must be a positive integer, got {resolution}.")
        if not 0.0 <= float(max_bad_fraction) <= 1.0:
            raise ConfigError(f"data.max_bad_fraction must lie in [0, 1], got {max_bad_fraction}.")
        self.path = str(path)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.max_bad_fraction = float(max_bad_fraction)
        self.data_shape = (self.channels, self.resolution, self.resolution)
        self._index: ImageIndex | None = None
        self._size_checked = False

    def _get_index(self) -> ImageIndex:
        if self._index is None:
            self._index = index_images(self.path)
        return self._index

    @property
    def num_classes(self) -> int:  # type: ignore[override]
        """Number of class subfolders (0 for unlabelled images); lists the files on first use."""
        return len(self._get_index().classes)

    @property
    def classes(self) -> list[str]:
        """Class names (subfolder names) in label order."""
        return list(self._get_index().classes)

    @property
    def num_bad(self) -> int:
        """Unreadable images met so far in this process (workers keep their own counts)."""
        return self.dataset.num_bad if isinstance(self.dataset, ImageFileDataset) else 0

    def check(self) -> None:
        """Raise :class:`DataError` when the path is missing, not a folder/zip, holds no images, or none of
        the images tried can be read (before any logger starts)."""
        self.setup()
        assert isinstance(self.dataset, ImageFileDataset)
        self.dataset.probe(self.dataset._decode)
        if not self._size_checked:  # once per module: check() runs at build time, and may run again
            self._size_checked = True
            dataset = self.dataset
            sizes = dataset.spread_sizes(lambda i: dataset.image_size(dataset.members[i]))
            warn_if_upsampled(sizes, self.resolution, str(Path(self.path).resolve()))

    def setup(self, stage: str | None = None) -> None:
        self._get_index()
        if self.dataset is not None:
            return
        index = self._get_index()
        self.dataset = ImageFileDataset(
            os.path.abspath(self.path),
            index.members,
            index.labels,
            self.resolution,
            self.channels,
            self.max_bad_fraction,
        )
