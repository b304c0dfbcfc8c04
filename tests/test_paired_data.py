"""Paired data for image-to-image translation: folders of pairs, pairs synthesized by degradation,
and CIFAR-10 read from JPEG zips. Every image here is generated; no dataset is needed."""

from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganforge.config import make
from ganforge.data.base import InfiniteBatchSampler
from ganforge.data.degrade import DegradedDataModule
from ganforge.data.digits import DigitsDataModule
from ganforge.data.paired import EpochIndexSampler, PairedFolderDataModule, held_out_split
from ganforge.data.torchvision_data import CIFAR10DataModule
from ganforge.errors import ConfigError, DataError
from helpers import compose_cfg, fake_mnist

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SIZE, RES = 20, 16  # stored images are SIZE px = the load size: crops are exact, no resampling


def take(loader, n):
    return list(itertools.islice(iter(loader), n))


def one_line(exc_info: pytest.ExceptionInfo) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


# --- generated pairs --------------------------------------------------------------------------------
def pattern(i: int, size: int = SIZE) -> np.ndarray:
    """Image ``i`` of a pair's A side: red = 12 x column, green = 12 x row, blue = 10 + 20 i."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([12 * x, 12 * y, np.full_like(x, 10 + 20 * i)], axis=-1).astype(np.uint8)


def partner(a: np.ndarray) -> np.ndarray:
    """The B side of a pair: the negative of A."""
    return 255 - a


def save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def make_ab(root: Path, n: int = 12, splits: bool = False) -> Path:
    """A/ and B/ folders (B as .bmp: pairing ignores extensions); with ``splits``, 3 pairs in val/."""
    for i in range(n):
        where = ("val/" if i >= n - 3 else "train/") if splits else ""
        save(pattern(i), root / f"{where}A/{i:02d}.png")
        save(partner(pattern(i)), root / f"{where}B/{i:02d}.bmp")
    return root


def make_side_by_side(root: Path, n: int = 12, val: int = 3) -> Path:
    """pix2pix's layout: AB images (left A, right B) in train/ and val/."""
    for i in range(n):
        where = "val" if i >= n - val else "train"
        save(np.concatenate([pattern(i), partner(pattern(i))], axis=1), root / where / f"{i}.png")
    return root


def zip_tree(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(src).as_posix())
    return dest


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return x.add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def crop_of(img: np.ndarray) -> tuple[int, int, int, bool]:
    """(pair index, top, left, flipped) of a RES crop of an A image; asserts it is one."""
    i = (int(img[0, 0, 2]) - 10) // 20
    flipped = img[0, 0, 0] > img[0, -1, 0]
    cols = img[0, ::-1, 0] if flipped else img[0, :, 0]
    top, left = int(img[0, 0, 1]) // 12, int(cols[0]) // 12
    assert np.array_equal(img, pattern(i)[top : top + RES, left : left + RES][:, :: -1 if flipped else 1])
    return i, top, left, bool(flipped)


def folder_module(path: Path, **kw) -> PairedFolderDataModule:
    base = dict(resolution=RES, load_size=SIZE, batch_size=4, seed=7)
    return PairedFolderDataModule(str(path), **{**base, **kw})


# --- paired folders ---------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
@pytest.mark.parametrize(("layout", "as_zip"), [("ab_folders", False), ("side_by_side", True)])
def test_pairs_stay_aligned_under_crops_and_flips(
    tmp_path: Path, layout: str, as_zip: bool, direction: str
) -> None:
    root = (
        make_ab(tmp_path / "ab", splits=True)
        if layout == "ab_folders"
        else make_side_by_side(tmp_path / "sbs")
    )
    path = zip_tree(root, tmp_path / "pairs.zip", prefix="facades/") if as_zip else root
    dm = folder_module(path, direction=direction)
    dm.check()
    assert dm.paired and dm.data_shape == dm.source_shape == (3, RES, RES) and dm.num_classes == 0
    assert dm._get_index().layout == layout
    crops = []
    for src, tgt, label in take(dm.train_dataloader(), 6):
        assert src.shape == tgt.shape == (4, 3, RES, RES) and label.tolist() == [-1] * 4
        assert src.dtype == tgt.dtype == torch.float32 and src.abs().max() <= 1
        for s, t in zip(src, tgt, strict=True):
            a, b = (to_uint8(s), to_uint8(t)) if direction == "AtoB" else (to_uint8(t), to_uint8(s))
            assert np.array_equal(b, partner(a))  # the same pair, the same crop, the same flip
            crops.append(crop_of(a))
    assert {flipped for *_, flipped in crops} == {False, True}
    assert len({(top, left) for _, top, left, _ in crops}) > 5
    assert {i for i, *_ in crops} == set(range(9))  # val/ holds pairs 9, 10, 11: never trained on


def test_resumed_stream_repeats_the_crops_and_flips(tmp_path: Path) -> None:
    path = make_ab(tmp_path / "ab", n=10)  # 9 training pairs: 6 batches of 4 span 3 epochs
    full = take(folder_module(path).train_dataloader(), 6)
    resumed = folder_module(path)
    resumed._position = lambda: (3, 0, 1)  # as if restored at generator step 3
    for a, b in zip(full[3:], take(resumed.train_dataloader(), 3), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    grouped = folder_module(path, steps_per_batch=3)  # 3 generator steps per Lightning batch
    first = take(grouped.train_dataloader(), 1)[0]
    assert torch.equal(first[0], torch.cat([b[0] for b in full[:3]]))
    other_seed = take(folder_module(path, seed=8).train_dataloader(), 1)[0]
    assert not torch.equal(other_seed[0], full[0][0])
    # a pair seen in two epochs gets new crops/flips: virtual indices differ per epoch
    sampler = EpochIndexSampler(9, 4, seed=7)
    stream = [v for batch in itertools.islice(iter(sampler), 6) for v in batch]
    assert sorted(v % 9 for v in stream[:9]) == list(range(9)) and sorted(stream[9:18]) == list(range(9, 18))
    plain = InfiniteBatchSampler(9, 4, seed=7)
    assert [v % 9 for v in stream] == [i for b in itertools.islice(iter(plain), 6) for i in b]
    single = EpochIndexSampler(9, 4, seed=7).batch(5)  # DDP: the ranks split the single stream
    ranks = [EpochIndexSampler(9, 2, seed=7, rank=r, world_size=2).batch(5) for r in (0, 1)]
    assert ranks[0] + ranks[1] == single


def test_zip_pairs_with_workers_match_the_serial_stream(tmp_path: Path) -> None:
    path = zip_tree(make_side_by_side(tmp_path / "sbs"), tmp_path / "pairs.zip")
    serial = take(folder_module(path).train_dataloader(), 3)
    parallel = folder_module(path, num_workers=2)
    parallel.items([0])  # a zip handle open in the parent: workers must open their own
    for a, b in zip(serial, take(parallel.train_dataloader(), 3), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_held_out_and_items_are_deterministic(tmp_path: Path) -> None:
    path = make_ab(tmp_path / "ab", n=20)  # no split folders: 10% held out by a fixed permutation
    a, b = folder_module(path, seed=1), folder_module(path, seed=2, direction="BtoA")
    assert a.num_items() == 18 and a.num_val_items() == 2 and a.held_out_from == "val_fraction"
    sa, ta, ya = a.val_items([0, 1])
    sb, tb, yb = b.val_items([0, 1])
    assert torch.equal(sa, tb) and torch.equal(ta, sb) and torch.equal(ya, yb)  # the same pairs, any seed
    assert torch.equal(sa, a.val_items([0, 1])[0])
    train_blue = {int(to_uint8(x)[0, 0, 2]) for x in a.items(range(18))[0]}
    held_blue = {int(to_uint8(x)[0, 0, 2]) for x in a.val_items(range(2))[1]}
    assert not {255 - v for v in train_blue} & held_blue and len(train_blue) == 18  # targets = B = 255 - A
    x, y = a.items([0, 5])
    assert x.shape == (2, 3, RES, RES) and y.tolist() == [-1, -1]
    assert torch.equal(x, a.items([0, 5])[0]) and a.real_batch(3).shape == (3, 3, RES, RES)
    assert len(a.fingerprint()) == 16
    with pytest.raises(IndexError):
        a.val_items([2])
    split = folder_module(make_side_by_side(tmp_path / "sbs", n=12, val=4))
    assert split.num_items() == 8 and split.num_val_items() == 4 and split.held_out_from == "val"
    assert held_out_split(10, 0.1) == held_out_split(10, 0.1) and len(held_out_split(10, 0.1)[1]) == 1


def test_labels_from_class_folders_and_grayscale(tmp_path: Path) -> None:
    for i in range(6):
        cls = "cats" if i < 3 else "dogs"
        save(pattern(i), tmp_path / f"A/{cls}/{i}.png")
        save(partner(pattern(i)), tmp_path / f"B/{cls}/{i}.png")
    dm = folder_module(tmp_path, channels=1, val_fraction=0.0, load_size=None)
    assert dm.num_classes == 2 and dm.classes == ["cats", "dogs"] and dm.load_size == round(RES * 286 / 256)
    src, tgt, label = take(dm.train_dataloader(), 1)[0]
    assert src.shape == (4, 1, RES, RES) and sorted(set(label.tolist())) <= [0, 1]
    assert dm.items(range(6))[1].tolist() == [0, 0, 0, 1, 1, 1] and dm.num_val_items() == 0


def test_paired_folder_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match="does not exist") as info:
        folder_module(missing).check()
    assert str(missing.resolve()) in one_line(info)

    plain = tmp_path / "plain"
    save(pattern(0), plain / "x.png")
    with pytest.raises(DataError, match=r"neither paired layout.*A/ and B/.*side-by-side") as info:
        folder_module(plain).check()
    one_line(info)

    names = make_ab(tmp_path / "names", n=5)
    (names / "B" / "03.bmp").rename(names / "B" / "03b.bmp")
    (names / "B" / "04.bmp").unlink()
    with pytest.raises(DataError, match=r"2 of the 5 in A/ have no namesake.*03, 04.*1 of the 4 in B/.*03b"):
        folder_module(names).check()

    sizes = make_ab(tmp_path / "sizes", n=3)
    save(partner(pattern(1, 24)), sizes / "B" / "01.bmp")
    with pytest.raises(DataError, match=r"same size.*20x20.*24x24") as info:
        folder_module(sizes, val_fraction=0.0).check()
    one_line(info)

    wide = make_side_by_side(tmp_path / "wide", n=4, val=1)
    save(np.zeros((20, 30, 3), np.uint8), wide / "train" / "1.png")
    with pytest.raises(DataError, match=r"1.png is 30x20.*twice as wide") as info:
        folder_module(wide).setup("fit")
    one_line(info)
    dm = folder_module(wide)
    with pytest.raises(DataError, match="twice as wide"):  # also when met while loading
        dm._dataset(dm._get_index().train, augment=True).item(1)

    with pytest.raises(DataError, match="no training pairs"):
        folder_module(_only_val(tmp_path / "valonly")).check()
    with pytest.raises(ConfigError, match="AtoB or BtoA"):
        folder_module(plain, direction="AB")
    with pytest.raises(ConfigError, match="load_size"):
        folder_module(plain, load_size=8)


def _only_val(root: Path) -> Path:
    for i in range(2):
        save(pattern(i), root / f"val/A/{i}.png")
        save(partner(pattern(i)), root / f"val/B/{i}.png")
    return root


# --- degraded pairs ---------------------------------------------------------------------------------
def degraded(degradation: str, seed: int = 0, source=None, **kw) -> DegradedDataModule:
    source = source if source is not None else DigitsDataModule(resolution=16)
    return DegradedDataModule(source, degradation, batch_size=8, seed=seed, **kw)


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(resolution=16)
    dm.setup("fit")
    return dm


def test_super_resolution_is_bicubic_down_then_up(digits: DigitsDataModule) -> None:
    dm = degraded("super_resolution", source=digits, scale=4)
    src, tgt, label = take(dm.train_dataloader(), 1)[0]
    assert src.shape == tgt.shape == (8, 1, 16, 16) and dm.source_shape == dm.data_shape == (1, 16, 16)
    low = F.interpolate(tgt, size=4, mode="bicubic", antialias=True).clamp(-1, 1)
    assert torch.allclose(src, F.interpolate(low, size=16, mode="bicubic").clamp(-1, 1))
    assert dm.num_classes == 10 and set(label.tolist()) <= set(range(10))
    assert not torch.equal(src, tgt)


@pytest.mark.parametrize("degradation", ["denoise", "inpaint"])
def test_random_degradations_are_seeded_and_held_out_is_fixed(
    digits: DigitsDataModule, degradation: str
) -> None:
    a, b, c = (degraded(degradation, seed=s, source=digits) for s in (1, 1, 2))
    batch_a, batch_b, batch_c = (take(m.train_dataloader(), 2) for m in (a, b, c))
    for x, y in zip(batch_a, batch_b, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
    src, tgt, _ = batch_a[0]
    if degradation == "denoise":
        assert abs((src - tgt).std().item() - 0.2) < 0.02
    else:  # holes of 0 with sides in [4, 8] px, the rest untouched
        changed = src != tgt
        assert (src[changed] == 0).all() and changed.flatten(1).any(1).all()
        assert (changed.flatten(1).sum(1) <= 64).all()
    # another run seed: other noise on the training stream, but the very same held-out pairs
    ids_a = [a.split()[0][v % a.num_items()] for v in EpochIndexSampler(a.num_items(), 8, 1).batch(0)]
    ids_c = [c.split()[0][v % c.num_items()] for v in EpochIndexSampler(c.num_items(), 8, 2).batch(0)]
    common = sorted(set(ids_a) & set(ids_c))
    if common:  # the same clean item degraded under two run seeds differs
        i, j = ids_a.index(common[0]), ids_c.index(common[0])
        assert torch.equal(batch_a[0][1][i], batch_c[0][1][j]) and not torch.equal(src[i], batch_c[0][0][j])
    assert not torch.equal(batch_a[0][0], batch_c[0][0])
    assert a.split() == c.split() and not set(a.split()[0]) & set(a.split()[1])
    assert a.num_items() + a.num_val_items() == 1797 and a.num_val_items() == 180
    va, vc = a.val_items(range(5)), c.val_items(range(5))
    assert all(torch.equal(p, q) for p, q in zip(va, vc, strict=True))
    assert not torch.equal(va[0], va[1])


def test_degraded_stream_resumes_exactly(digits: DigitsDataModule) -> None:
    full = take(degraded("denoise", source=digits).train_dataloader(), 5)
    resumed = degraded("denoise", source=digits)
    resumed._position = lambda: (2, 0, 1)
    for x, y in zip(full[2:], take(resumed.train_dataloader(), 3), strict=True):
        assert all(torch.equal(p, q) for p, q in zip(x, y, strict=True))
    tgt, label = resumed.items([0, 1, 2])
    train = resumed.split()[0]
    x, y = digits.items(train[:3])
    assert torch.equal(tgt, x) and torch.equal(label, y)


def test_degradations_reject_data_they_cannot_work_on(digits: DigitsDataModule) -> None:
    with pytest.raises(ConfigError, match="colorize needs RGB data; Digits has 1 channel") as info:
        degraded("colorize", source=digits)
    one_line(info)
    with pytest.raises(ConfigError, match=r"data.scale=3 .*divides.*16x16") as info:
        degraded("super_resolution", source=digits, scale=3)
    one_line(info)
    with pytest.raises(ConfigError, match="super_resolution, denoise, colorize, inpaint"):
        degraded("blur", source=digits)
    with pytest.raises(ConfigError, match="hole_min"):
        degraded("inpaint", source=digits, hole_min=0.6)
    with pytest.raises(ConfigError, match="val_fraction"):
        degraded("denoise", source=digits, val_fraction=1.0)
    assert degraded("super_resolution", source=digits, scale=8).source_shape == (1, 16, 16)


# --- CIFAR-10 from JPEGs, also as the RGB source of data=degrade --------------------------------------
CLASSES = {"airplane": 0, "cat": 3, "truck": 9}


@pytest.fixture(scope="module")
def cifar_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny zip in the layout of cifar10-train-jpg.zip (train/<class>/NNNN.jpg), plus a test/ split."""
    path = tmp_path_factory.mktemp("cifar") / "tiny-cifar.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for split, count in (("train", 4), ("test", 1)):
            for name in CLASSES:
                for k in range(count):
                    img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
                    buf = io.BytesIO()
                    img.save(buf, "JPEG", quality=95)
                    zf.writestr(f"{split}/{name}/{k:04d}.jpg", buf.getvalue())
    return path


def test_cifar10_reads_a_jpeg_zip_or_folder(cifar_zip: Path, tmp_path: Path) -> None:
    dm = CIFAR10DataModule(root=str(cifar_zip), resolution=16, batch_size=4)
    dm.check()
    dm.prepare_data()  # nothing to download
    dm.setup("fit")
    assert dm.dataset.images.dtype == torch.uint8 and dm.dataset.images.shape == (12, 3, 16, 16)
    assert dm.dataset.labels.tolist() == [0] * 4 + [3] * 4 + [9] * 4  # train/ only, CIFAR-10 label order
    x, y = take(dm.train_dataloader(), 1)[0]
    assert x.shape == (4, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    with zipfile.ZipFile(cifar_zip) as zf:
        zf.extractall(tmp_path / "folder")
    folder = CIFAR10DataModule(root=str(tmp_path / "folder"))
    folder.setup("fit")
    assert folder.dataset.labels.tolist() == dm.dataset.labels.tolist()
    assert folder.dataset.images.shape == (12, 3, 32, 32)


def test_cifar10_missing_or_foreign_jpegs_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset files are missing.*\.zip") as info:
        CIFAR10DataModule(root=str(tmp_path / "cifar10-train-jpg.zip")).check()
    one_line(info)
    foreign = tmp_path / "foreign"
    save(pattern(0, 32), foreign / "train" / "cat" / "0.png")
    save(pattern(1, 32), foreign / "train" / "unicorn" / "0.png")
    with pytest.raises(DataError, match="not CIFAR-10 classes.*unicorn") as info:
        CIFAR10DataModule(root=str(foreign)).check()
    one_line(info)


def test_colorize_cifar_jpegs(cifar_zip: Path) -> None:
    source = CIFAR10DataModule(root=str(cifar_zip))
    dm = degraded("colorize", source=source, val_fraction=0.25)
    assert dm.source_shape == (1, 32, 32) and dm.data_shape == (3, 32, 32) and dm.num_classes == 10
    src, tgt, label = take(dm.train_dataloader(), 1)[0]
    assert src.shape == (8, 1, 32, 32) and tgt.shape == (8, 3, 32, 32)
    luma = (tgt * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(src, luma) and set(label.tolist()) <= set(CLASSES.values())
    assert dm.num_items() == 9 and dm.num_val_items() == 3


def test_shared_cifar10_train_zip_index() -> None:
    archive = SHARED / "cifar10-train-jpg.zip"
    if not archive.is_file():
        pytest.skip(f"{archive.name} not found in ../shared/datasets (optional real data)")
    dm = CIFAR10DataModule(root=str(archive))
    dm.check()
    members, labels = dm._jpeg_index(archive)  # the index only: decoding all 50,000 takes seconds
    assert len(members) == 50000 and np.bincount(labels).tolist() == [5000] * 10
    assert members[0] == "train/airplane/0000.jpg" and labels[0] == 0
    assert members[-1].startswith("train/truck/") and labels[-1] == 9


# --- through the real Hydra tree ----------------------------------------------------------------------
def test_degrade_composes_with_a_source_group(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, "data=degrade", "data/source=digits", "data.degradation=inpaint", "seed=5")
    dm = make(cfg.data, draws_per_step=2, steps_per_batch=1)
    assert isinstance(dm, DegradedDataModule) and isinstance(dm.source, DigitsDataModule)
    assert dm.seed == 5 and dm.batch_size == 64 and dm.data_shape == (1, 16, 16)
    dm.check()
    src, tgt, label = take(dm.train_dataloader(), 1)[0]
    assert src.shape == tgt.shape == (128, 1, 16, 16) and label.shape == (128,)

    fake_mnist(tmp_path / "mnist")
    for override in ("data.source.resolution=32", "data.resolution=32"):
        cfg = compose_cfg(
            tmp_path, "data=degrade", "data/source=mnist", f"data.source.root={tmp_path / 'mnist'}", override
        )
        assert cfg.data.source._target_.endswith("MNISTDataModule")
        dm = make(cfg.data, draws_per_step=1, steps_per_batch=1)
        dm.check()
        assert dm.data_shape == (1, 32, 32) and dm.num_items() == 45 and dm.num_val_items() == 5
    cfg = compose_cfg(tmp_path, "data=degrade", "data/source=image_folder")
    with pytest.raises(ConfigError, match=r"^data.source.path: mandatory"):
        make(cfg.data, draws_per_step=1, steps_per_batch=1)


def test_paired_folder_composes(tmp_path: Path) -> None:
    root = make_side_by_side(tmp_path / "pairs")
    cfg = compose_cfg(
        tmp_path, "data=paired_folder", f"data.path={root}", "data.resolution=16", "data.num_workers=0"
    )
    dm = make(cfg.data, draws_per_step=1, steps_per_batch=1)
    assert isinstance(dm, PairedFolderDataModule) and dm.load_size == 18 and dm.seed == cfg.seed
    dm.check()
    src, tgt, label = take(dm.train_dataloader(), 1)[0]
    assert src.shape == tgt.shape == (16, 3, 16, 16)
