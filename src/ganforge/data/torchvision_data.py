"""MNIST, Fashion-MNIST and CIFAR-10 read from torchvision's on-disk layout into one uint8 tensor
(CIFAR-10 also from a .zip or folder of JPEGs laid out as ``train/<class>/*.jpg``)."""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ganforge.data.base import GANDataModule, InMemoryDataset
from ganforge.data.folder import index_images, load_image
from ganforge.errors import ConfigError, DataError
from ganforge.memory import check_room

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
CIFAR10_CLASSES = (  # label order of torchvision's CIFAR10 (also the alphabetical order)
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def resize_uint8(images: Tensor, resolution: int, chunk: int = 4096) -> Tensor:
    """Resize uint8 (N, C, H, W) images to square ``resolution`` (antialiased bilinear), still uint8."""
    # held in memory: a resolution too large for that is one line, not an allocation error
    check_room(
        "data.resolution",
        resolution,
        images.shape[0] * images.shape[1] * resolution**2,
        "the images at this resolution",
    )
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty((*images.shape[:2], resolution, resolution), dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk].float()
        part = F.interpolate(part, size=(resolution, resolution), mode="bilinear", antialias=True)
        out[i : i + chunk] = part.round_().clamp_(0, 255).to(torch.uint8)
    return out


class TorchvisionDataModule(GANDataModule):
    """Base: a torchvision training split held in memory as uint8 (N, C, R, R), scaled on the fly."""

    dataset_name: str = ""
    channels: int = 1
    native_resolution: int = 28
    layout_hint: str = ""

    def __init__(
        self, root: str = "data", download: bool = False, resolution: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        resolution = self.native_resolution if resolution is None else int(resolution)
        if resolution < 1:
            raise ConfigError(f"data.resolution must be a positive integer, got {resolution}.")
        self.root = str(root)
        self.download = bool(download)
        self.resolution = resolution
        self.data_shape = (self.channels, resolution, resolution)
        self.num_classes = 10

    # --- what subclasses describe -------------------------------------------------------------
    def _data_dir(self) -> Path:
        """The folder under ``root`` where torchvision reads the files."""
        raise NotImplementedError

    def _expected_files(self) -> tuple[str, ...]:
        return ()

    def _torchvision_dataset(self, download: bool) -> Any:
        """The torchvision training split (raises what torchvision raises when files are absent)."""
        raise NotImplementedError

    def _arrays(self, ds: Any) -> tuple[Tensor, Tensor]:
        """(uint8 images (N, C, H, W), long labels (N,)) from the torchvision dataset's raw arrays."""
        raise NotImplementedError

    # --- shared logic -------------------------------------------------------------------------
    def _missing(self) -> list[str]:
        folder = self._data_dir()
        return [name for name in self._expected_files() if not (folder / name).is_file()]

    def _error(self, problem: str) -> DataError:
        """One paragraph saying where the files were looked for, what layout is expected and how to fix it."""
        root = os.path.abspath(self.root)
        files = ", ".join(self._expected_files())
        return DataError(
            f"{self.dataset_name}: {problem} Looked in data.root={root}, where torchvision expects the "
            f"folder {self._data_dir()}{os.sep} to hold the files {files}{self.layout_hint}. To fix it, "
            f"put the files there, or point data.root=/path/to/dir at a folder that holds them, or run "
            f"once with data.download=true on a machine with internet access."
        )

    def check(self) -> None:
        """Raise :class:`DataError` when the files are absent (skipped when download=true may fetch them)."""
        if self.download:
            return
        missing = self._missing()
        if len(missing) == len(self._expected_files()):
            raise self._error("the dataset files are missing.")
        if missing:
            raise self._error(f"some dataset files are missing ({', '.join(missing)}).")

    def _load(self, download: bool) -> Any:
        try:
            return self._torchvision_dataset(download)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError, ... on a failed fetch
            cause = " ".join(str(exc).split()) or type(exc).__name__
            if len(cause) > 300:
                cause = cause[:300] + "..."
            what = "could not be downloaded or read" if download else "could not be read"
            raise self._error(f"the dataset {what} ({type(exc).__name__}: {cause}).") from None

    def prepare_data(self) -> None:
        """Download the files once per node when download=true; never fails on missing files otherwise."""
        if self.download:
            self._load(download=True)

    def setup(self, stage: str | None = None) -> None:
        self.check()
        if self.dataset is not None:
            return
        images, labels = self._arrays(self._load(download=self.download))
        images = resize_uint8(images.contiguous(), self.resolution)
        self.dataset = InMemoryDataset(images, labels)


class MNISTDataModule(TorchvisionDataModule):
    """MNIST handwritten digits: 60,000 training images, 1 channel, 28 px native."""

    dataset_name = "MNIST"
    layout_hint = " (uncompressed: gunzip any .gz downloads)"
    channels = 1
    native_resolution = 28

    def __init__(self, root: str = "data", download: bool = False, resolution: int = 28, **kwargs) -> None:
        super().__init__(root=root, download=download, resolution=resolution, **kwargs)

    def _data_dir(self) -> Path:
        return Path(os.path.abspath(self.root)) / self._tv_class().__name__ / "raw"

    def _expected_files(self) -> tuple[str, ...]:
        return _MNIST_FILES

    def _tv_class(self) -> Any:
        from torchvision.datasets import MNIST

        return MNIST

    def _torchvision_dataset(self, download: bool) -> Any:
        return self._tv_class()(self.root, train=True, download=download)

    def _arrays(self, ds: Any) -> tuple[Tensor, Tensor]:
        images = torch.as_tensor(ds.data, dtype=torch.uint8).unsqueeze(1)
        return images, torch.as_tensor(ds.targets, dtype=torch.long)


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST clothing images: 60,000 training images, 1 channel, 28 px native."""

    dataset_name = "FashionMNIST"

    def _tv_class(self) -> Any:
        from torchvision.datasets import FashionMNIST

        return FashionMNIST


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 natural images: 50,000 training images, 3 channels, 32 px native.

    ``root`` holds torchvision's ``cifar-10-batches-py/``, or is a .zip (or a folder) of JPEGs laid
    out as ``train/<class>/*.jpg`` (e.g. ``cifar10-train-jpg.zip``; only ``train/`` is read when it
    is there), labelled by class folder in CIFAR-10's order (airplane=0 ... truck=9).
    """

    dataset_name = "CIFAR-10"
    layout_hint = (
        "; or data.root may be a .zip (or a folder) of JPEGs laid out as train/<class>/*.jpg, "
        "e.g. data.root=../shared/datasets/cifar10-train-jpg.zip"
    )
    channels = 3
    native_resolution = 32

    def __init__(self, root: str = "data", download: bool = False, resolution: int = 32, **kwargs) -> None:
        super().__init__(root=root, download=download, resolution=resolution, **kwargs)

    def _data_dir(self) -> Path:
        return Path(os.path.abspath(self.root)) / "cifar-10-batches-py"

    def _expected_files(self) -> tuple[str, ...]:
        return _CIFAR10_FILES

    def _torchvision_dataset(self, download: bool) -> Any:
        from torchvision.datasets import CIFAR10

        return CIFAR10(self.root, train=True, download=download)

    def _arrays(self, ds: Any) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)
        return images, torch.as_tensor(ds.targets, dtype=torch.long)

    # --- JPEGs in train/<class>/ (a .zip or a folder) ---------------------------------------------
    def _jpeg_root(self) -> Path | None:
        """``root`` when it is a file (read as a zip) or a folder of ``train/<class>/`` images, else None."""
        root = Path(self.root)
        if root.is_file():
            return root
        if root.is_dir() and not self._data_dir().is_dir():
            if any((root / "train" / name).is_dir() for name in CIFAR10_CLASSES):
                return root
        return None

    def _jpeg_index(self, root: Path) -> tuple[list[str], list[int]]:
        """The member names (``train/`` only when there is one) and labels; DataError when unusable."""
        index = index_images(root)  # DataError for a non-zip file or one without images
        members = index.members
        if any(m.startswith("train/") for m in members):
            members = [m for m in members if m.startswith("train/")]
        classes = [PurePosixPath(m).parent.name for m in members]
        unknown = sorted(set(classes) - set(CIFAR10_CLASSES))
        if unknown:
            raise DataError(
                f"{self.dataset_name}: {root.resolve()} holds images in folders that are not CIFAR-10 "
                f"classes ({', '.join(unknown[:5])}); expected train/<class>/*.jpg with the classes "
                f"{', '.join(CIFAR10_CLASSES)}."
            )
        to_label = {name: i for i, name in enumerate(CIFAR10_CLASSES)}
        return members, [to_label[c] for c in classes]

    def check(self) -> None:
        root = self._jpeg_root()
        if root is None:
            super().check()
        else:
            self._jpeg_index(root)

    def prepare_data(self) -> None:
        if self._jpeg_root() is None:  # JPEGs at hand: nothing to download
            super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        root = self._jpeg_root()
        if root is None:
            super().setup(stage)
            return
        if self.dataset is not None:
            return
        images, labels = self._decode_jpegs(root, *self._jpeg_index(root))
        self.dataset = InMemoryDataset(resize_uint8(images, self.resolution), labels)

    def _decode_jpegs(self, root: Path, members: list[str], labels: list[int]) -> tuple[Tensor, Tensor]:
        """Decode every image once into uint8 (N, 3, 32, 32) (about 5 s for 50,000 on one core)."""
        size = self.native_resolution
        out = np.empty((len(members), size, size, 3), dtype=np.uint8)
        with contextlib.ExitStack() as stack:
            zf = None if root.is_dir() else stack.enter_context(zipfile.ZipFile(root))
            for i, member in enumerate(members):
                try:
                    out[i] = load_image(str(root / member) if zf is None else zf.read(member), size, "RGB")
                except Exception as exc:  # PIL raises many types
                    raise DataError(
                        f"{self.dataset_name}: cannot read {member} in {root.resolve()} "
                        f"({type(exc).__name__}: {exc}); repair or remove it."
                    ) from None
        images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
        return images, torch.as_tensor(labels, dtype=torch.long)
