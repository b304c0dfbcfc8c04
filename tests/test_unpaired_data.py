"""Unpaired data for CycleGAN-style translation: CycleGAN folders, the digits benchmark with a known
answer, and two classes of a labelled dataset. Every image here is generated or bundled."""

from __future__ import annotations

import io
import itertools
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.config import make
from ganforge.data.digits import DigitsDataModule
from ganforge.data.folder import ImageFolderDataModule
from ganforge.data.torchvision_data import CIFAR10DataModule
from ganforge.data.unpaired import (
    INK,
    PAPER,
    ClassPairDataModule,
    DigitsTranslationDataModule,
    UnpairedBatchSampler,
    UnpairedFolderDataModule,
    load_digit_images,
    transform,
)
from ganforge.errors import ConfigError, DataError
from helpers import compose_cfg

SIZE, RES = 20, 16  # stored images are SIZE px = the load size: training crops are exact


def take(loader, n: int) -> list:
    return list(itertools.islice(iter(loader), n))


def same(x: tuple, y: tuple) -> bool:
    return all(torch.equal(p, q) for p, q in zip(x, y, strict=True))


def one_line(info: pytest.ExceptionInfo) -> str:
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def keys(x: torch.Tensor) -> list[bytes]:
    """A hashable key per image of a batch."""
    return [row.numpy().tobytes() for row in x.contiguous()]


# --- the digits benchmark ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_tr() -> DigitsTranslationDataModule:
    dm = DigitsTranslationDataModule(batch_size=8, seed=3)
    dm.setup("fit")
    return dm


def shifted(x: torch.Tensor, dy: int, dx: int, fill: float) -> torch.Tensor:
    """``x`` (..., H, W) translated by (dy, dx), the uncovered border filled with ``fill``."""
    out = torch.full_like(x, fill)
    h, w = x.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def test_transform_is_not_a_shift(digits_tr: DigitsTranslationDataModule) -> None:
    a, _, truth = digits_tr.val_a(range(40))
    assert torch.equal(truth, transform(a)) and torch.equal(transform(a[0]), truth[0])
    assert truth.shape == a.shape == (40, 3, 16, 16)
    shifts = list(itertools.product(range(-4, 5), repeat=2))
    # no integer translation of a, in any channel, comes near any channel of T(a) (measured: >= 0.24)
    for x, t in zip(a, truth, strict=True):
        best = min(
            (shifted(x[0], dy, dx, -1.0) - t[c]).abs().mean().item() for dy, dx in shifts for c in range(3)
        )
        assert best > 0.2
    # in the blue channel the digit is inverted (ink darker than paper): anti-correlated with a
    assert torch.corrcoef(torch.stack([a[:, 0].flatten(), truth[:, 2].flatten()]))[0, 1] < -0.8
    # nor once the colours are undone: T's stroke map (read back from its green channel) holds more
    # ink than a's, at every shift
    stroke_a = (a[:, 0] + 1) / 2
    stroke_t = (PAPER[1] - (truth[:, 1] + 1) / 2) / (PAPER[1] - INK[1])
    assert torch.allclose(stroke_t, torch.nn.functional.max_pool2d(stroke_a, 3, 1, 1), atol=1e-5)
    assert (stroke_t.sum((1, 2)) > 1.2 * stroke_a.sum((1, 2))).all()
    for s, t in zip(stroke_a, stroke_t, strict=True):
        assert min((shifted(s, dy, dx, 0.0) - t).abs().mean().item() for dy, dx in shifts) > 0.05
    # B: paper and ink are the extremes of every channel (blue: paper brightest; red, green: ink), in [-1, 1]
    paper, ink = torch.tensor(PAPER).mul(2).sub(1), torch.tensor(INK).mul(2).sub(1)
    assert torch.allclose(truth.amax((0, 2, 3)), torch.maximum(paper, ink), atol=1e-5)
    assert truth.min() >= -1


def test_digits_translation_halves_are_disjoint(digits_tr: DigitsTranslationDataModule) -> None:
    dm = digits_tr
    assert dm.unpaired and dm.has_ground_truth and dm.num_classes == 10 and dm.data_shape == (3, 16, 16)
    parts = dm.source_indices()
    sizes = {k: len(v) for k, v in parts.items()}
    assert sizes == {"train_a": 809, "val_a": 90, "train_b": 808, "val_b": 90}
    half_a, half_b = set(parts["train_a"]) | set(parts["val_a"]), set(parts["train_b"]) | set(parts["val_b"])
    assert not half_a & half_b and len(half_a | half_b) == 1797
    assert not set(parts["train_a"]) & set(parts["val_a"]) and not set(parts["train_b"]) & set(parts["val_b"])
    images, labels = load_digit_images(16)
    rgb = images.expand(-1, 3, -1, -1)
    idx_a, idx_b = torch.tensor(parts["train_a"][:30]), torch.tensor(parts["train_b"][:30])
    a, ya = dm.train_a(range(30))
    b, yb = dm.train_b(range(30))
    assert torch.equal(a, rgb[idx_a]) and torch.equal(ya, labels[idx_a])
    assert torch.equal(b, transform(rgb[idx_b])) and torch.equal(yb, labels[idx_b])
    va, vya, truth = dm.val_a(range(90))
    vb, vyb = dm.val_b(range(90))
    assert torch.equal(va, rgb[torch.tensor(parts["val_a"])]) and torch.equal(truth, transform(va))
    assert torch.equal(vb, transform(rgb[torch.tensor(parts["val_b"])]))
    assert torch.equal(vyb, labels[torch.tensor(parts["val_b"])]) and set(vya.tolist()) == set(range(10))
    # the held-out split is the same for every run seed
    other = DigitsTranslationDataModule(seed=11)
    assert other.source_indices() == parts and same(other.val_a([0, 7])[:2], dm.val_a([0, 7])[:2])
    # items: A's training images, then B's
    assert dm.num_items() == 809 + 808
    x, y = dm.items([808, 809, 0, 1616])
    last_a, last_b = dm.train_a([808]), dm.train_b([807])
    assert torch.equal(x, torch.cat([last_a[0], b[:1], a[:1], last_b[0]]))
    assert torch.equal(y, torch.cat([last_a[1], yb[:1], ya[:1], last_b[1]]))
    assert len(dm.fingerprint()) == 16 and dm.real_batch(5).shape == (5, 3, 16, 16)
    with pytest.raises(IndexError):
        dm.val_b([90])
    big = DigitsTranslationDataModule(resolution=32)
    assert big.val_a([0])[2].shape == (1, 3, 32, 32) and big.data_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="resolution"):
        DigitsTranslationDataModule(resolution=4)


def test_streams_are_independent_seeded_and_resumable(digits_tr: DigitsTranslationDataModule) -> None:
    dm = digits_tr
    a_all, b_all = dm.train_a(range(dm.num_train_a()))[0], dm.train_b(range(dm.num_train_b()))[0]
    where_a = {k: i for i, k in enumerate(keys(a_all))}
    where_b = {k: i for i, k in enumerate(keys(b_all))}
    full = take(dm.train_dataloader(), 5)
    seq_a, seq_b = [], []
    for a, b, ya, yb in full:
        assert a.shape == b.shape == (8, 3, 16, 16) and ya.dtype == yb.dtype == torch.long
        seq_a += [where_a[k] for k in keys(a)]  # every image is a training image of its own domain
        seq_b += [where_b[k] for k in keys(b)]
    assert len(set(seq_a)) == len(seq_a) == 40 and len(set(seq_b)) == 40  # one epoch: no repeats yet
    assert sum(i == j for i, j in zip(seq_a, seq_b, strict=True)) < 5  # two different permutations
    assert seq_a != list(range(40)) and seq_b != seq_a[: len(seq_b)]
    # the same seed gives the same batches; another seed others
    again = DigitsTranslationDataModule(batch_size=8, seed=3)
    assert all(same(x, y) for x, y in zip(full, take(again.train_dataloader(), 5), strict=True))
    other = take(DigitsTranslationDataModule(batch_size=8, seed=4).train_dataloader(), 1)[0]
    assert not torch.equal(other[0], full[0][0]) and not torch.equal(other[1], full[0][1])
    # resume at generator step 2 (both domains), grouped steps, and the DDP split
    resumed = DigitsTranslationDataModule(batch_size=8, seed=3)
    resumed._position = lambda: (2, 0, 1)
    assert all(same(x, y) for x, y in zip(full[2:], take(resumed.train_dataloader(), 3), strict=True))
    grouped = DigitsTranslationDataModule(batch_size=8, seed=3, steps_per_batch=2, draws_per_step=1)
    first = take(grouped.train_dataloader(), 1)[0]
    assert all(torch.equal(first[i], torch.cat([full[0][i], full[1][i]])) for i in range(4))
    single = UnpairedBatchSampler(809, 808, 8, seed=3).batch(4)
    ranks = [UnpairedBatchSampler(809, 808, 4, seed=3, rank=r, world_size=2).batch(4) for r in (0, 1)]
    assert ranks[0] + ranks[1] == single


def test_domains_of_different_sizes_cycle_separately() -> None:
    sampler = UnpairedBatchSampler(5, 3, 2, seed=1)
    stream = [pair for batch in itertools.islice(iter(sampler), 15) for pair in batch]
    a, b = [va for va, _ in stream], [vb for _, vb in stream]
    for epoch in range(6):  # virtual indices: epoch * n + item
        assert sorted(a[5 * epoch : 5 * epoch + 5]) == list(range(5 * epoch, 5 * epoch + 5))
    for epoch in range(10):
        assert sorted(b[3 * epoch : 3 * epoch + 3]) == list(range(3 * epoch, 3 * epoch + 3))


# --- CycleGAN folders -------------------------------------------------------------------------------
def pattern(i: int, size: int = SIZE) -> np.ndarray:
    """Image ``i`` of domain A: red = 12 x column, green = 12 x row, blue = 10 + 20 i."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([12 * x, 12 * y, np.full_like(x, 10 + 20 * i)], axis=-1).astype(np.uint8)


def save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def make_cyclegan(root: Path, n_a: int = 7, n_b: int = 5, test: tuple[int, int] = (2, 3)) -> Path:
    """trainA/ (images 0 .. n_a - 1), trainB/ (the negatives of 0 .. n_b - 1, same names), and
    testA/, testB/ with the next ``test`` images (none: no test folder)."""
    for i in range(n_a):
        save(pattern(i), root / "trainA" / f"{i:02d}.png")
    for i in range(n_b):
        save(255 - pattern(i), root / "trainB" / f"{i:02d}.png")
    for side, count, first in (("A", test[0], n_a), ("B", test[1], n_b)):
        for i in range(first, first + count):
            img = pattern(i) if side == "A" else 255 - pattern(i)
            save(img, root / f"test{side}" / f"{i:02d}.png")
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
    """(image index, top, left, flipped) of a RES crop of an A image; asserts it is one."""
    i = (int(img[0, 0, 2]) - 10) // 20
    flipped = bool(img[0, 0, 0] > img[0, -1, 0])
    cols = img[0, ::-1, 0] if flipped else img[0, :, 0]
    top, left = int(img[0, 0, 1]) // 12, int(cols[0]) // 12
    assert np.array_equal(img, pattern(i)[top : top + RES, left : left + RES][:, :: -1 if flipped else 1])
    return i, top, left, flipped


def folder_module(path: Path, **kw) -> UnpairedFolderDataModule:
    base = dict(resolution=RES, load_size=SIZE, batch_size=4, seed=7)
    return UnpairedFolderDataModule(str(path), **{**base, **kw})


@pytest.mark.parametrize(("as_zip", "wrapper"), [(False, ""), (True, "horse2zebra/"), (False, "wrap/")])
def test_cyclegan_folders_stream_independent_crops(tmp_path: Path, as_zip: bool, wrapper: str) -> None:
    root = make_cyclegan(tmp_path / "data" / wrapper if wrapper and not as_zip else tmp_path / "data")
    path = zip_tree(root, tmp_path / "data.zip", prefix=wrapper) if as_zip else tmp_path / "data"
    dm = folder_module(path)
    dm.check()
    assert dm.unpaired and not dm.has_ground_truth and dm.num_classes == 0 and dm.data_shape == (3, RES, RES)
    assert dm.held_out_from == ("testA", "testB") and (dm.num_train_a(), dm.num_train_b()) == (7, 5)
    crops_a, crops_b = [], []
    for a, b, ya, yb in take(dm.train_dataloader(), 6):
        assert a.shape == b.shape == (4, 3, RES, RES) and ya.tolist() == yb.tolist() == [-1] * 4
        assert a.dtype == torch.float32 and a.abs().max() <= 1 and b.abs().max() <= 1
        crops_a += [crop_of(to_uint8(x)) for x in a]
        crops_b += [crop_of(255 - to_uint8(x)) for x in b]  # B's images are the negatives
    assert {i for i, *_ in crops_a} == set(range(7)) and {i for i, *_ in crops_b} == set(range(5))
    for crops in (crops_a, crops_b):  # each domain draws its crops and flips
        assert {flipped for *_, flipped in crops} == {False, True}
        assert len({(top, left) for _, top, left, _ in crops}) > 5
    # independent streams: B's images are not the partners (namesakes) of A's, nor cropped alike
    assert [i for i, *_ in crops_b[:4]] != [i for i, *_ in crops_a[:4]]
    assert sum(ca[1:] == cb[1:] for ca, cb in zip(crops_a, crops_b, strict=True)) < len(crops_a) // 2
    # held out: testA/ and testB/, resized to RES, nothing random
    va, ya, truth = dm.val_a([0, 1])
    vb, yb = dm.val_b([0, 1, 2])
    assert truth is None and va.shape == (2, 3, RES, RES) and ya.tolist() == [-1, -1]
    assert [int(to_uint8(x)[5, 5, 2]) for x in va] == [10 + 20 * 7, 10 + 20 * 8]
    assert [255 - int(to_uint8(x)[5, 5, 2]) for x in vb] == [10 + 20 * i for i in (5, 6, 7)]
    assert torch.equal(va, folder_module(path, seed=1).val_a([0, 1])[0])
    # items: the training images of A, then B's, not augmented
    x, y = dm.items(range(12))
    assert x.shape == (12, 3, RES, RES) and y.tolist() == [-1] * 12
    assert [int(to_uint8(v)[5, 5, 2]) for v in x[:7]] == [10 + 20 * i for i in range(7)]
    assert [255 - int(to_uint8(v)[5, 5, 2]) for v in x[7:]] == [10 + 20 * i for i in range(5)]


def test_cyclegan_stream_resumes_with_the_same_crops(tmp_path: Path) -> None:
    path = zip_tree(make_cyclegan(tmp_path / "data", n_a=6, n_b=3), tmp_path / "data.zip")
    full = take(folder_module(path).train_dataloader(), 5)  # B's 3 images: 5 epochs of it
    resumed = folder_module(path)
    resumed._position = lambda: (3, 0, 1)
    assert all(same(x, y) for x, y in zip(full[3:], take(resumed.train_dataloader(), 2), strict=True))
    workers = folder_module(path, num_workers=2)
    workers.items([0])  # a zip handle open in the parent: the workers open their own
    assert all(same(x, y) for x, y in zip(full[:3], take(workers.train_dataloader(), 3), strict=True))
    other = take(folder_module(path, seed=8).train_dataloader(), 1)[0]
    assert not torch.equal(other[0], full[0][0]) and not torch.equal(other[1], full[0][1])


def test_cyclegan_without_test_folders_holds_out_a_fraction(tmp_path: Path) -> None:
    root = make_cyclegan(tmp_path / "data", n_a=10, n_b=5, test=(0, 0))
    dm = folder_module(root, val_fraction=0.2, load_size=None, channels=1)
    assert dm.held_out_from == ("val_fraction", "val_fraction") and dm.load_size == round(RES * 286 / 256)
    assert (dm.num_train_a(), dm.num_val_a(), dm.num_train_b(), dm.num_val_b()) == (8, 2, 4, 1)
    index = dm._get_index()
    assert not set(index.train[0]) & set(index.held_out[0]) and not set(index.train[1]) & set(
        index.held_out[1]
    )
    assert index.held_out == folder_module(root, val_fraction=0.2, seed=3)._get_index().held_out
    a, b, *_ = take(dm.train_dataloader(), 1)[0]
    assert a.shape == b.shape == (4, 1, RES, RES)


def test_cyclegan_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(DataError, match="does not exist") as info:
        folder_module(missing).check()
    assert str(missing.resolve()) in one_line(info)

    no_b = tmp_path / "no_b"
    save(pattern(0), no_b / "trainA" / "0.png")
    save(pattern(1), no_b / "photos" / "1.png")
    with pytest.raises(
        DataError, match=r"no trainB/ folder; expected the CycleGAN layout: trainA/, trainB/"
    ) as info:
        folder_module(no_b).check()
    assert "photos/" in one_line(info)
    with pytest.raises(DataError, match=r"no wrap/trainB/ folder; expected the CycleGAN layout") as info:
        folder_module(zip_tree(no_b, tmp_path / "no_b.zip", prefix="wrap/")).check()
    one_line(info)

    empty = make_cyclegan(tmp_path / "empty", n_b=0, test=(1, 0))
    (empty / "trainB").mkdir()
    (empty / "trainB" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"trainB/ holds no images; domain B needs training images") as info:
        folder_module(empty).check()
    one_line(info)
    with pytest.raises(DataError, match=r"horse2zebra/trainB/ holds no images") as info:
        folder_module(zip_tree(empty, tmp_path / "empty.zip", prefix="horse2zebra/")).check()
    one_line(info)

    flat = tmp_path / "flat"
    save(pattern(0), flat / "x.png")
    with pytest.raises(DataError, match=r"no trainA/ folder; expected the CycleGAN layout") as info:
        folder_module(flat).check()
    one_line(info)
    with pytest.raises(ConfigError, match="load_size"):
        folder_module(flat, load_size=8)
    with pytest.raises(ConfigError, match="channels"):
        folder_module(flat, channels=2)


# --- two classes of a labelled dataset --------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(resolution=16)
    dm.setup("fit")
    return dm


def test_class_pair_of_digits(digits: DigitsDataModule) -> None:
    dm = ClassPairDataModule(digits, class_a=3, class_b=8, batch_size=8, seed=2)
    dm.check()
    assert dm.unpaired and not dm.has_ground_truth and dm.num_classes == 2 and dm.data_shape == (1, 16, 16)
    labels = digits.dataset.labels
    parts = dm.source_indices()
    assert (labels[parts["train_a"] + parts["val_a"]] == 3).all() and (labels[parts["train_b"]] == 8).all()
    assert len(parts["train_a"]) + len(parts["val_a"]) == int((labels == 3).sum())
    assert len(parts["train_b"]) + len(parts["val_b"]) == int((labels == 8).sum())
    assert not set(parts["train_a"]) & set(parts["val_a"]) and len(parts["val_b"]) == round(
        0.1 * (labels == 8).sum().item()
    )
    threes = set(keys(digits.items(torch.nonzero(labels == 3).flatten().tolist())[0]))
    eights = set(keys(digits.items(torch.nonzero(labels == 8).flatten().tolist())[0]))
    for a, b, ya, yb in take(dm.train_dataloader(), 3):
        assert set(keys(a)) <= threes and set(keys(b)) <= eights
        assert ya.tolist() == [0] * 8 and yb.tolist() == [1] * 8
    x, y = dm.items([0, dm.num_train_a()])
    assert y.tolist() == [0, 1] and x.shape == (2, 1, 16, 16)
    va, ya, truth = dm.val_a([0])
    assert truth is None and ya.tolist() == [0] and dm.val_b([0])[1].tolist() == [1]
    assert dm.domain_names == ("3", "8")
    assert ClassPairDataModule(digits, class_a="3", class_b=8).class_labels() == (3, 8)


def test_class_pair_errors(digits: DigitsDataModule, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"class_a=3 and data.class_b=3 are the same class") as info:
        ClassPairDataModule(digits, class_a=3, class_b=3).check()
    one_line(info)
    with pytest.raises(ConfigError, match=r"class_b=12 is not a class of Digits: .* 0 to 9") as info:
        ClassPairDataModule(digits, class_a=3, class_b=12).check()
    one_line(info)
    with pytest.raises(
        ConfigError, match=r"class_a='horse' is not a class of Digits; its classes: 0, 1"
    ) as info:
        ClassPairDataModule(digits, class_a="horse", class_b=1).check()
    one_line(info)
    flat = tmp_path / "flat"
    for i in range(3):
        save(pattern(i), flat / f"{i}.png")
    with pytest.raises(ConfigError, match="needs a labelled data.source") as info:
        ClassPairDataModule(ImageFolderDataModule(str(flat), resolution=16), class_a=0, class_b=1).check()
    one_line(info)


CIFAR_CLASSES = ("airplane", "cat", "truck")  # labels 0, 3, 9 in CIFAR-10's order


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zip in the layout of cifar10-train-jpg.zip (train/<class>/NNNN.jpg), 4 images per class."""
    path = tmp_path_factory.mktemp("cifar") / "tiny-cifar.zip"
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name in CIFAR_CLASSES:
            for k in range(4):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                zf.writestr(f"train/{name}/{k:04d}.jpg", buf.getvalue())
    return path


def test_class_pair_of_cifar_by_name(tiny_cifar: Path, tmp_path: Path) -> None:
    source = CIFAR10DataModule(root=str(tiny_cifar), resolution=16)
    dm = ClassPairDataModule(source, class_a="cat", class_b="Truck", val_fraction=0.25, batch_size=2)
    dm.check()
    assert (
        dm.class_labels() == (3, 9) and dm.domain_names == ("cat", "truck") and dm.data_shape == (3, 16, 16)
    )
    labels = source.dataset.labels
    parts = dm.source_indices()
    assert (labels[parts["train_a"]] == 3).all() and (labels[parts["val_b"]] == 9).all()
    assert (dm.num_train_a(), dm.num_val_a(), dm.num_train_b(), dm.num_val_b()) == (3, 1, 3, 1)
    a, b, ya, yb = take(dm.train_dataloader(), 1)[0]
    assert a.shape == b.shape == (2, 3, 16, 16) and ya.tolist() == [0, 0] and yb.tolist() == [1, 1]
    with pytest.raises(DataError, match=r"class 'horse' \(7\) of CIFAR10 has no images") as info:
        ClassPairDataModule(source, class_a="horse", class_b="cat").check()
    one_line(info)
    with pytest.raises(ConfigError, match=r"'unicorn' is not a class of CIFAR10; its classes: airplane"):
        ClassPairDataModule(source, class_a="cat", class_b="unicorn").check()
    # through the real Hydra tree, the source as a nested config
    cfg = compose_cfg(
        tmp_path,
        "data=class_pair",
        f"data.source.root={tiny_cifar}",
        "data.class_a=airplane",
        "data.class_b=truck",
        "data.resolution=16",
    )
    built = make(cfg.data, draws_per_step=1, steps_per_batch=1)
    built.check()
    assert isinstance(built.source, CIFAR10DataModule) and built.class_labels() == (0, 9)
    assert built.data_shape == (3, 16, 16) and built.seed == cfg.seed


# --- through the real Hydra tree ----------------------------------------------------------------------
def test_unpaired_configs_compose(tmp_path: Path) -> None:
    cfg = compose_cfg(tmp_path, "data=digits_translation", "seed=5")
    dm = make(cfg.data, draws_per_step=1, steps_per_batch=1)
    assert isinstance(dm, DigitsTranslationDataModule) and dm.seed == 5 and dm.batch_size == 64
    dm.check()
    a, b, ya, yb = take(dm.train_dataloader(), 1)[0]
    assert a.shape == b.shape == (64, 3, 16, 16) and ya.shape == yb.shape == (64,)

    cfg = compose_cfg(tmp_path, "data=class_pair", "data/source=digits", "data.class_a=3", "data.class_b=8")
    dm = make(cfg.data, draws_per_step=2, steps_per_batch=1)
    assert isinstance(dm, ClassPairDataModule) and isinstance(dm.source, DigitsDataModule)
    dm.check()
    a, b, ya, yb = take(dm.train_dataloader(), 1)[0]
    assert a.shape == b.shape == (128, 1, 16, 16) and set(ya.tolist()) == {0} and set(yb.tolist()) == {1}

    root = make_cyclegan(tmp_path / "cyclegan")
    cfg = compose_cfg(tmp_path, "data=unpaired_folder", f"data.path={root}", "data.resolution=16")
    dm = make(cfg.data, draws_per_step=1, steps_per_batch=1)
    assert isinstance(dm, UnpairedFolderDataModule) and dm.load_size == 18 and dm.batch_size == 1
    dm.check()
    assert take(dm.train_dataloader(), 1)[0][0].shape == (1, 3, 16, 16)
    cfg = compose_cfg(tmp_path, "data=class_pair", "data/source=image_folder")
    with pytest.raises(ConfigError, match=r"^data.source.path: mandatory"):
        make(cfg.data, draws_per_step=1, steps_per_batch=1)
