"""File-backed datasets: torchvision layouts (faked), image folders and zips, clear errors on missing data."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.folder import ImageFileDataset, ImageFolderDataModule
from ganforge.data.torchvision_data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from ganforge.errors import DataError
from helpers import fake_mnist

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


# --- fixtures -----------------------------------------------------------------------------------
def _image(size: tuple[int, int], mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def make_image_tree(root: Path, with_corrupt: bool = False) -> list[str]:
    """Two class folders of images in mixed sizes/modes/formats; returns the relative file names."""
    files = {
        "cats/a.png": _image((40, 30), "RGB", 1),
        "cats/b.JPG": _image((32, 32), "RGB", 2),
        "cats/c.png": _image((20, 50), "L", 3),
        "dogs/d.png": _image((64, 48), "RGBA", 4),
        "dogs/e.jpeg": _image((33, 70), "RGB", 5),
        "dogs/f.gif": _image((16, 16), "RGB", 6).convert("P"),
    }
    for name, img in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / name)
    (root / "dogs" / "notes.txt").write_text("not an image")
    names = list(files)
    if with_corrupt:
        (root / "dogs" / "g_broken.png").write_bytes(np.random.default_rng(7).bytes(300))
        names.append("dogs/g_broken.png")
    return names


def zip_tree(src: Path, dest: Path, compression: int) -> Path:
    with zipfile.ZipFile(dest, "w", compression=compression) as zf:
        for f in sorted(src.rglob("*")):
            zf.write(f, f.relative_to(src).as_posix())
    return dest


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    make_image_tree(root)
    return root


# --- torchvision datasets -----------------------------------------------------------------------
@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule, CIFAR10DataModule])
def test_missing_torchvision_root_is_one_paragraph(tmp_path: Path, cls: type) -> None:
    root = tmp_path / "nowhere"
    dm = cls(root=str(root))
    dm.prepare_data()  # download=False: must not fail on missing files
    for call in (dm.check, lambda: dm.setup("fit")):
        with pytest.raises(DataError) as info:
            call()
        msg = str(info.value)
        assert str(root.resolve()) in msg
        assert "data.root" in msg and "data.download=true" in msg
        assert "\n" not in msg


def test_missing_mnist_names_the_raw_layout(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"MNIST.raw.*train-images-idx3-ubyte"):
        MNISTDataModule(root=str(tmp_path)).check()
    with pytest.raises(DataError, match="cifar-10-batches-py.*data_batch_1"):
        CIFAR10DataModule(root=str(tmp_path)).check()


def test_corrupt_cifar_files_give_data_error(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]:
        (folder / name).write_bytes(b"junk")
    (folder / "test_batch").write_bytes(b"junk")
    (folder / "batches.meta").write_bytes(b"junk")
    dm = CIFAR10DataModule(root=str(tmp_path))
    dm.check()  # the files exist
    with pytest.raises(DataError, match="could not be read") as info:
        dm.setup("fit")
    assert "\n" not in str(info.value)


def test_failed_download_gives_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(self) -> None:
        raise URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    dm = MNISTDataModule(root=str(tmp_path), download=True)
    dm.check()  # download=True: files may still come
    with pytest.raises(DataError, match="could not be downloaded") as info:
        dm.prepare_data()
    assert "URLError" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("cls", "folder"), [(MNISTDataModule, "MNIST"), (FashionMNISTDataModule, "FashionMNIST")]
)
def test_fake_mnist_loads(tmp_path: Path, cls: type, folder: str) -> None:
    images, labels = fake_mnist(tmp_path, folder)
    dm = cls(root=str(tmp_path), batch_size=8)
    assert dm.data_shape == (1, 28, 28) and dm.num_classes == 10
    dm.check()
    dm.setup("fit")
    ds = dm.dataset
    assert ds.images.dtype == torch.uint8 and ds.images.shape == (50, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert torch.equal(ds.labels, torch.from_numpy(labels).long())
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and x.min() == -1.0
    assert ds[1][0].max() == 1.0
    first = dm.dataset
    dm.setup("fit")  # repeated setup keeps the dataset
    assert dm.dataset is first


def test_fake_mnist_resized(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    dm = MNISTDataModule(root=str(tmp_path), resolution=32, batch_size=4, draws_per_step=2)
    assert dm.data_shape == (1, 32, 32)
    dm.setup("fit")
    assert dm.dataset.images.dtype == torch.uint8 and dm.dataset.images.shape == (50, 1, 32, 32)
    # constant images stay constant through the antialiased resize
    assert (dm.dataset.images[0] == 0).all() and (dm.dataset.images[1] == 255).all()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 32, 32) and y.shape == (8,)
    assert x.min() >= -1.0 and x.max() <= 1.0


# --- image folders and zips ---------------------------------------------------------------------
def _check_folder_module(dm: ImageFolderDataModule, n: int = 6) -> None:
    dm.setup("fit")
    ds = dm.dataset
    assert len(ds) == n
    assert dm.num_classes == 2 and dm.classes == ["cats", "dogs"]
    assert dm.data_shape == (3, 16, 16)
    for i in range(n):
        x, y = ds[i]
        assert x.shape == (3, 16, 16) and x.dtype == torch.float32
        assert x.min() >= -1.0 and x.max() <= 1.0
        assert y.dtype == torch.long
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_image_folder_directory(image_dir: Path) -> None:
    _check_folder_module(ImageFolderDataModule(str(image_dir), resolution=16))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_image_folder_zip(image_dir: Path, tmp_path: Path, compression: int) -> None:
    archive = zip_tree(image_dir, tmp_path / "images.zip", compression)
    dm = ImageFolderDataModule(str(archive), resolution=16)
    _check_folder_module(dm)
    pickle.loads(pickle.dumps(dm.dataset))  # picklable even with an open zip handle
    assert dm.dataset._zip is not None


def test_image_folder_grayscale_and_unlabelled(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    _image((10, 20), "RGB", 0).save(root / "x.png")
    _image((30, 12), "RGBA", 1).save(root / "y.webp")
    dm = ImageFolderDataModule(str(root), resolution=8, channels=1)
    dm.setup("fit")
    assert dm.num_classes == 0 and dm.data_shape == (1, 8, 8)
    x, y = dm.dataset[1]
    assert x.shape == (1, 8, 8) and y.item() == -1


def test_center_crop_keeps_the_middle(tmp_path: Path) -> None:
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, 20:40] = 255  # a white middle third of a wide image
    Image.fromarray(arr).save(tmp_path / "wide.png")
    dm = ImageFolderDataModule(str(tmp_path), resolution=20)
    dm.setup("fit")
    x, _ = dm.dataset[0]
    assert x.min() > 0.9


@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_image_is_skipped_and_counted(tmp_path: Path, as_zip: bool) -> None:
    root = tmp_path / "images"
    names = make_image_tree(root, with_corrupt=True)
    path = zip_tree(root, tmp_path / "c.zip", zipfile.ZIP_STORED) if as_zip else root
    dm = ImageFolderDataModule(str(path), resolution=16, max_bad_fraction=0.5)
    dm.setup("fit")
    bad = sorted(names).index("dogs/g_broken.png")
    assert dm.num_bad == 0
    x, y = dm.dataset[bad]  # replaced by the next readable image (wrapping around to index 0)
    first = dm.dataset[(bad + 1) % len(names)]
    assert torch.equal(x, first[0]) and y == first[1]
    assert dm.num_bad == 1 and dm.dataset.bad_indices == {bad}
    dm.dataset[bad]
    assert dm.num_bad == 1


def test_too_many_corrupt_images_fail(tmp_path: Path) -> None:
    root = tmp_path / "images"
    names = make_image_tree(root, with_corrupt=True)
    dm = ImageFolderDataModule(str(root), resolution=16)  # default max_bad_fraction=0.01
    dm.setup("fit")
    with pytest.raises(DataError, match="max_bad_fraction"):
        dm.dataset[sorted(names).index("dogs/g_broken.png")]


def test_all_corrupt_images_fail(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"not a png")
    dm = ImageFolderDataModule(str(tmp_path), max_bad_fraction=1.0)
    dm.setup("fit")
    with pytest.raises(DataError, match="None of the 3 images"):
        dm.dataset[0]


def test_missing_empty_and_imageless_paths(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match="does not exist") as info:
        ImageFolderDataModule(str(missing)).check()
    assert str(missing.resolve()) in str(info.value)

    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"holds no images.*\.png") as info:
        ImageFolderDataModule(str(empty)).setup("fit")
    assert str(empty.resolve()) in str(info.value)

    archive = tmp_path / "noimages.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("docs/readme.txt", "hi")
        zf.writestr("__MACOSX/cats/._a.png", "resource fork")
    with pytest.raises(DataError, match=r"holds no images.*\.jpg"):
        ImageFolderDataModule(str(archive)).check()

    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"nope")
    with pytest.raises(DataError):
        ImageFolderDataModule(str(not_zip)).check()


def test_mixed_top_level_and_subfolders_fail(image_dir: Path) -> None:
    _image((8, 8), "RGB", 9).save(image_dir / "stray.png")
    with pytest.raises(DataError, match="ambiguous"):
        ImageFolderDataModule(str(image_dir)).check()


# --- loaders ------------------------------------------------------------------------------------
def _first_batch(dm: ImageFolderDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(dm.train_dataloader()))


def test_folder_loader_batches_and_seeding(image_dir: Path) -> None:
    kw = dict(resolution=16, batch_size=2, draws_per_step=2, seed=3)
    a = ImageFolderDataModule(str(image_dir), **kw)
    x, y = _first_batch(a)
    assert x.shape == (4, 3, 16, 16) and y.shape == (4,) and y.dtype == torch.long
    x2, y2 = _first_batch(ImageFolderDataModule(str(image_dir), **kw))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_zip_loader_with_workers(image_dir: Path, tmp_path: Path) -> None:
    archive = zip_tree(image_dir, tmp_path / "images.zip", zipfile.ZIP_DEFLATED)
    kw = dict(resolution=16, batch_size=3, draws_per_step=2, seed=5)
    serial = ImageFolderDataModule(str(archive), num_workers=0, **kw)
    serial.setup("fit")
    serial.dataset[0]  # open a handle in the parent process: workers must not reuse it
    parallel = ImageFolderDataModule(str(archive), num_workers=2, **kw)
    parallel.setup("fit")
    parallel.dataset[0]
    loader = parallel.train_dataloader()
    it = iter(loader)
    batches = [next(it) for _ in range(3)]
    del it
    serial_it = iter(serial.train_dataloader())
    for x, y in batches:
        sx, sy = next(serial_it)
        assert x.shape == (6, 3, 16, 16)
        assert torch.equal(x, sx) and torch.equal(y, sy)


def test_shared_cifar10_test_zip() -> None:
    archive = SHARED / "cifar10-test-jpg.zip"
    if not archive.is_file():
        pytest.skip(f"{archive.name} not found in ../shared/datasets (optional real data)")
    dm = ImageFolderDataModule(str(archive), resolution=32, batch_size=16)
    dm.check()
    assert dm.num_classes == 10
    assert dm.classes[0] == "airplane" and dm.classes[-1] == "truck"
    dm.setup("fit")
    assert len(dm.dataset) == 10000
    assert isinstance(dm.dataset, ImageFileDataset)
    x, y = dm.dataset[0]
    assert x.shape == (3, 32, 32)
    xb, yb = _first_batch(dm)
    assert xb.shape == (16, 3, 32, 32) and xb.min() >= -1 and xb.max() <= 1
    assert yb.min() >= 0 and yb.max() <= 9
    assert dm.num_bad == 0
