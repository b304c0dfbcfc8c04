"""The image-file layer of translation data (paired and CycleGAN folders): folder layouts, decoding
on demand and pix2pix's resize-then-random-crop jitter, applied alike to aligned images."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import torch
from PIL import Image
from torch import Tensor

from ganforge.data.folder import (
    AutoWorkers,
    FileSource,
    convert_image,
    existing_source,
    fit_square,
    list_images,
    to_tensor,
)
from ganforge.data.translation import check_val_fraction
from ganforge.errors import ConfigError, DataError

PIX2PIX_JITTER = 286 / 256  # pix2pix resizes 256 px images to 286, then random-crops 256


class ImageFileOptions(AutoWorkers):
    """The options of a data module reading image files with pix2pix's jitter (a mixin), and
    ``data.num_workers=auto`` (:class:`~ganforge.data.folder.AutoWorkers`)."""

    def _file_options(
        self,
        path: str | os.PathLike,
        resolution: int,
        load_size: int | None,
        flip: bool,
        val_fraction: float,
        channels: int,
        max_bad_fraction: float,
    ) -> None:
        """Check and keep them (``load_size`` None: resolution·286/256); one-line ConfigErrors for
        values that cannot work."""
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels}.")
        if int(resolution) < 1:
            raise ConfigError(f"data.resolution must be a positive integer, got {resolution}.")
        self.resolution = int(resolution)
        self.load_size = round(self.resolution * PIX2PIX_JITTER) if load_size is None else int(load_size)
        if self.load_size < self.resolution:
            raise ConfigError(
                f"data.load_size={load_size} must be at least data.resolution={self.resolution} "
                f"(training images are resized to load_size, then randomly cropped to resolution)."
            )
        if not 0.0 <= float(max_bad_fraction) <= 1.0:
            raise ConfigError(f"data.max_bad_fraction must lie in [0, 1], got {max_bad_fraction}.")
        self.path = str(path)
        self.flip = bool(flip)
        self.val_fraction = check_val_fraction(val_fraction)
        self.channels = int(channels)
        self.max_bad_fraction = float(max_bad_fraction)
        self.data_shape = (self.channels, self.resolution, self.resolution)


# --- layouts ----------------------------------------------------------------------------------------
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


def list_layout(
    path: str | os.PathLike, kind: str, holding: str, layout_folders: set[str] | frozenset[str], expected: str
) -> tuple[Path, str, list[tuple[str, tuple[str, ...]]]]:
    """(source, wrapper prefix, ``(member, its path parts below the prefix)`` per image) of a folder or
    .zip laid out in ``layout_folders``; one-line DataErrors when missing or without images."""
    p = existing_source(path, kind, holding)
    names = list_images(p)
    if not names:
        raise DataError(f"{p.resolve()} holds no images; {expected}.")
    prefix = wrapper_prefix(names, layout_folders)
    return p, prefix, [(n, PurePosixPath(n[len(prefix) :]).parts) for n in names]


def list_folders(path: Path) -> set[str]:
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


# --- decoding ---------------------------------------------------------------------------------------
class ImageFiles(FileSource):
    """Image members of a folder or .zip decoded on demand (``channels``: 1 or 3), and the training
    jitter: resized to ``load_size``, then randomly cropped to ``resolution`` and maybe flipped.
    Picklable for DataLoader workers (see :class:`~ganforge.data.folder.FileSource`)."""

    def __init__(
        self,
        source: str | os.PathLike,
        resolution: int,
        load_size: int,
        channels: int = 3,
        flip: bool = True,
        max_bad_fraction: float = 0.01,
    ) -> None:
        super().__init__(source, max_bad_fraction)
        self.resolution = resolution
        self.load_size = load_size
        self.mode = "L" if channels == 1 else "RGB"
        self.flip = flip

    def open(self, member: str) -> Image.Image:
        return Image.open(self.member_file(member))

    def read(
        self, member: str, size: tuple[int, int], check: Callable[[tuple[int, int]], None] | None = None
    ) -> Image.Image:
        """``member`` in this mode, decoded at a scale >= ``size``; ``check`` sees its size first."""
        with self.open(member) as img:
            if check is not None:
                check(img.size)
            return convert_image(img, self.mode, size)

    def decode(
        self, member: str, size: int, check: Callable[[tuple[int, int]], None] | None = None
    ) -> Tensor:
        """``member`` as uint8 (C, size, size): shorter side scaled to ``size``, center square."""
        return to_tensor(fit_square(self.read(member, (size, size), check), size))

    def crop_flip(self, images: Sequence[Tensor], gen: torch.Generator) -> list[Tensor]:
        """The same random ``resolution`` crop and maybe flip (drawn from ``gen``) of each of ``images``
        (aligned, ``load_size`` square)."""
        room = self.load_size - self.resolution
        top, left = (int(t) for t in torch.randint(room + 1, (2,), generator=gen))
        flip = bool(torch.rand((), generator=gen) < 0.5) and self.flip
        r = self.resolution
        out = [x[:, top : top + r, left : left + r] for x in images]
        return [x.flip(-1) for x in out] if flip else out
